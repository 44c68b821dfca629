"""``python -m esper train ...``."""

import sys

from esper.cli import main

sys.exit(main())
