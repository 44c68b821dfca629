"""The console's progress: durations, the ETA (with a fake clock), the epoch line, and the two
displays (plain lines into a pipe, the live table in a terminal)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from esper.cli import LiveProgress, PlainProgress, make_console, progress_display
from esper.leyline.stages import SeedStage
from esper.progress import Eta, RunBoard, format_duration


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def result(loss=1.25, val_loss=1.5, val_acc=41.5, perplexity=None):
    return SimpleNamespace(train_loss=loss, val_loss=val_loss, val_acc=val_acc, perplexity=perplexity)


@pytest.mark.parametrize("seconds, text", [(0, "0:00:00"), (4.4, "0:00:04"), (59.6, "0:01:00"),
                                           (3725, "1:02:05"), (97325, "27:02:05"), (-3, "0:00:00"),
                                           (None, "?"), (float("nan"), "?"), (float("inf"), "?")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_eta_is_the_units_left_at_the_pace_so_far():
    clock = FakeClock()
    eta = Eta(10, clock)
    assert eta.remaining() is None and eta.text() == "elapsed 0:00:00 eta ?"
    clock.now += 30
    eta.update(2)
    assert eta.elapsed() == 30 and eta.remaining() == pytest.approx(120)
    clock.now += 90
    eta.update(5)
    assert eta.remaining() == pytest.approx(120) and eta.text() == "elapsed 0:02:00 eta 0:02:00"
    eta.update(10)
    assert eta.remaining() == 0


def test_a_resumed_eta_measures_only_its_own_units():
    clock = FakeClock()
    eta = Eta(100, clock, done=90)
    clock.now += 20
    eta.update(92)
    assert eta.remaining() == pytest.approx(80)  # 10 s a unit, 8 left


def feed(board: RunBoard, clock: FakeClock) -> None:
    """Three epochs of 10 s: a seed germinates in block1 and trains; block0's seed is fossilized."""
    board.eta.restart()
    board.seed_germinated("block0", "s1", "conv_light", 664, "linear", "standard", 3)
    board.stage_changed("block0", "s1", SeedStage.DORMANT, SeedStage.GERMINATED, "")
    clock.now += 10
    board.epoch_completed(1, result(), 6000, 6664, 10.0)
    board.seed_germinated("block1", "s2", "attention", 552, "linear", "standard", 3)
    board.stage_changed("block1", "s2", SeedStage.GERMINATED, SeedStage.TRAINING, "")
    board.stage_changed("block0", "s1", SeedStage.HOLDING, SeedStage.FOSSILIZED, "")
    board.seed_fossilized("block0", "s1", "contribution +2.0pp", "heuristic", 664)
    clock.now += 10
    board.epoch_completed(2, result(loss=1.0, val_acc=50.0, perplexity=3.5), 6000, 7216, 10.0)


def test_the_plain_display_prints_one_line_per_epoch_and_one_per_lifecycle_moment():
    clock, out = FakeClock(), io.StringIO()
    feed(PlainProgress(out, 4, ["block0", "block1", "block2"], clock=clock), clock)
    assert out.getvalue().splitlines() == [
        "  block0: germinated s1 (conv_light, 664 params)",
        "epoch 1/4 loss 1.250 val_loss 1.500 val_acc 41.50% params 6664 | seeds block0 GERMINATED, fossilized 0, "
        "pruned 0 | elapsed 0:00:10 eta 0:00:30",
        "  block1: germinated s2 (attention, 552 params)",
        "  block0: fossilized s1: contribution +2.0pp",
        "epoch 2/4 loss 1.000 val_loss 1.500 val_acc 50.00% ppl 3.50 params 7216 | seeds block1 TRAINING, "
        "fossilized 1, pruned 0 | elapsed 0:00:20 eta 0:00:20",
    ]


def test_the_terminal_display_shows_epoch_of_total_and_the_eta():
    clock, out = FakeClock(), io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, color_system=None)
    live = LiveProgress(console, 4, ["block0", "block1"], clock=clock)
    feed(live, clock)
    console.print(live.render())
    text = out.getvalue()
    assert "epoch   2/4" in text and "eta 0:00:20" in text and "ppl 3.50" in text
    assert "block0: fossilized s1: contribution +2.0pp" in text
    assert ".py:" not in text  # no source locations


def test_log_strings_are_shown_as_text_never_as_markup():
    clock, out = FakeClock(), io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, color_system=None)
    live = LiveProgress(console, 4, ["block0"], clock=clock)
    live.seed_pruned("block0", "s1", "[bold]x[/bold] [red]", "governor")
    assert "block0: pruned s1 (governor): [bold]x[/bold] [red]" in out.getvalue()


def test_the_console_chooses_its_display_by_whether_stdout_is_a_terminal():
    piped = make_console(io.StringIO())
    assert not piped.is_terminal and piped.soft_wrap
    assert isinstance(progress_display(piped, 3, ["a"]), PlainProgress)
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert isinstance(progress_display(terminal, 3, ["a"]), LiveProgress)


def test_a_piped_console_does_not_wrap_long_lines():
    out = io.StringIO()
    console = make_console(out)
    path = "/tmp/" + "x" * 150 + "/run-a"
    console.print(f"run directory: {path}")
    assert out.getvalue() == f"run directory: {path}\n"
