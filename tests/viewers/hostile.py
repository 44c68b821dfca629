"""A run whose every string is hostile: Rich/Textual markup, HTML, ANSI escapes, nulls.

Every event kind is emitted several times (epochs 1, 2, ...), each time with every string
field, list-of-string entry and map key set to the next entry of ``HOSTILE`` (or null), and
the envelope's slot and seed too (of the kinds about a slot). The viewers must show all of it
as plain text.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from telemetry_schema import events as ev
from telemetry_schema.rundir import create_run
from telemetry_schema.writer import WriterConfig

HOSTILE = (
    "[/]",
    "[link=https://evil.example/]click me[/link]",
    "[@click=app.quit]press to quit[/]",
    "[bold red]shout",
    "[/bold]",
    "\x1b[31mansi red\x1b[0m",
    "[b]x[/i]",
    '<a href="https://evil.example/">html link</a>',
    "<img src=x onerror=alert(1)>",
    None,
)
"""The strings written into every string field (None: a null string)."""
START = 1_700_000_000.0


def _value(hint, text: str | None, i: int):
    """A value of the field type ``hint`` carrying ``text``."""
    hint = hint.__name__ if isinstance(hint, type) else str(hint)
    if hint.startswith("list[str]"):
        return [text]
    if hint.startswith("dict[str"):
        return {text if text is not None else "null": 0.5}
    if hint.startswith("str"):
        return text
    if hint.startswith("list[float]"):
        return [50.0]
    if hint.startswith("bool"):
        return bool(i % 2)
    if hint.startswith("int"):
        return i + 1
    return 0.5 + i


def hostile_event(cls: type[ev.Event], text: str | None, i: int) -> ev.Event:
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _value(hints[f.name], text, i) for f in dataclasses.fields(cls)})


def write_hostile_run(out: Path, run_id: str = "hostile-run", finish: bool = True) -> Path:
    """Write the run under ``out`` and return its directory."""
    clock = _Clock()
    started = ev.RunStarted(run_id=run_id, task=HOSTILE[0], topology=HOSTILE[2], host_params=10,
                            slot_ids=[s for s in HOSTILE if s is not None], heartbeat_s=0)
    rw = create_run(out, started, config=WriterConfig(heartbeat_s=0), clock=clock, wall_clock=clock)
    kinds = [c for c in ev.EVENT_TYPES if c not in (ev.RunStarted, ev.RunFinished)]
    for i, text in enumerate(HOSTILE):
        for old, new in (("DORMANT", "GERMINATED"), ("GERMINATED", "TRAINING")):  # a legal life first
            clock.now += 1.0
            rw.writer.emit(ev.StageChanged(from_stage=old, to_stage=new, reason=text), slot=text, seed=text,
                           epoch=i + 1, step=i + 1)
        for cls in kinds:
            clock.now += 1.0
            where = {"slot": text, "seed": text} if cls.SLOTTED else {}  # kinds about a slot only
            rw.writer.emit(hostile_event(cls, text, i), **where, epoch=i + 1, step=i + 1)
    clock.now += 1.0  # a named slot whose stage becomes null
    rw.writer.emit(ev.StageChanged(from_stage="TRAINING", to_stage=None, reason=None), slot="r0c0", seed="r0c0-1",
                   epoch=len(HOSTILE), step=len(HOSTILE))
    if finish:
        rw.close("failed", "[/] [@click=app.quit]quit[/]")
    else:
        rw.writer.flush()
    return rw.run_dir


class _Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now
