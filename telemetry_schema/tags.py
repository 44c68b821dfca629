"""Tags a user puts on runs: ``runs/<run_id>/tags.json``, a JSON list of short strings.

The file is the user's, apart from the log and run.json that the writer owns: ``esper train
--tag`` writes it first; ``esper-tui``'s run picker and the dashboard's runs page rewrite it
(atomically) when the user tags a run there, both from the same comma-separated text
(``parse_tags``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

TAGS = "tags.json"
TAG_RE = re.compile(r"^[\w.:+-][\w .:+-]{0,39}$")
"""A tag: 1 to 40 letters, digits, spaces and ``_.:+-`` (not starting with a space)."""


class TagError(ValueError):
    """A tag that is not allowed; the message is one line."""


def check_tag(tag: str) -> str:
    tag = tag.strip() if isinstance(tag, str) else tag
    if not isinstance(tag, str) or not TAG_RE.match(tag):
        raise TagError(f"bad tag {str(tag)[:50]!r}: use 1-40 letters, digits, spaces or _.:+-")
    return tag


def parse_tags(text: str) -> list[str]:
    """The tags of a comma-separated text as a user types it ('baseline, lr 3e-3'): parts
    stripped, empty parts dropped (not yet checked: ``write_tags`` checks them)."""
    return [t for t in (part.strip() for part in text.split(",")) if t]


def read_tags(run_dir: Path) -> list[str]:
    """A run's tags (none when the file is absent or not a list of valid tags: those are skipped)."""
    try:
        data = json.loads((Path(run_dir) / TAGS).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    return [t for t in data if isinstance(t, str) and TAG_RE.match(t)]


def write_tags(run_dir: Path, tags: list[str]) -> list[str]:
    """Replace a run's tags (checked, duplicates dropped, order kept); returns them."""
    clean = list(dict.fromkeys(check_tag(t) for t in tags))
    tmp = Path(run_dir) / (TAGS + ".tmp")
    tmp.write_text(json.dumps(clean))
    os.replace(tmp, Path(run_dir) / TAGS)
    return clean
