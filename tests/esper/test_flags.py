"""``esper --help`` and each command's ``--help`` import no torch; every flag says what it does
and what its default is."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from esper.flags import DefaultsFormatter, export_parser, make_parser


def imported_torch(code: str) -> list[str]:
    """The torch modules a fresh interpreter has imported after running ``code``."""
    probe = (f"{code}\nimport sys\n"
             "print('TORCH', sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120).stdout
    (line,) = [ln for ln in out.splitlines() if ln.startswith("TORCH ")]
    return eval(line[len("TORCH "):])


def test_the_flags_module_imports_no_torch():
    assert imported_torch("import esper.flags, esper.cli; esper.flags.make_parser(); esper.flags.export_parser()") == []


@pytest.mark.parametrize("words", [["--help"], ["train", "--help"], ["ppo", "--help"], ["export", "--help"]])
def test_help_imports_no_torch(words):
    code = ("from esper.cli import main\n"
            f"try:\n    main({words!r})\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code")
    assert imported_torch(code) == []


def test_the_esper_entry_point_answers_help_without_torch():
    """The installed command itself, as a user runs it: -X importtime lists every module imported."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "esper", "train", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--run-name NAME" in proc.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "esper.flags" in imported and "torch" not in imported


def all_actions():
    sub = next(a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parsers = {**sub.choices, "export": export_parser()}
    return [pytest.param(parser, action, id=f"{name} {'/'.join(action.option_strings) or action.dest}")
            for name, parser in parsers.items() for action in parser._actions
            if not isinstance(action, argparse._HelpAction)]


@pytest.mark.parametrize("parser, action", all_actions())
def test_every_flag_is_described_with_its_default(parser, action):
    assert action.help and len(action.help) > 10
    shown = DefaultsFormatter("esper")._get_help_string(action)
    if action.nargs != 0 and action.option_strings:  # a switch's default is 'off'; positionals have none
        assert "default" in shown, shown


def test_the_help_shows_the_defaults_of_the_configs():
    sub = next(a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    train, ppo = sub.choices["train"].format_help(), sub.choices["ppo"].format_help()
    for expected in ("(default: synthetic-images)", "(default 40; pydoc-text 15)", "(default: 64)",
                     "(default 8192)", "(default: permissive)", "(default: runs)"):
        assert expected in " ".join(train.split()), expected
    for expected in ("(default: 4)", "(default 150;", "(default 780;", "(default: 0.001)", "(default: paired)"):
        assert expected in " ".join(ppo.split()), expected
