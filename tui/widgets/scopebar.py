"""The rank and environment selector: one line under the header for multi-rank or multi-env runs.

It lists the ranks and environments with the one shown highlighted, marks ranks that diverge
from rank 0 (✗) or have gone silent (?), and spells out where each diverging rank disagrees.
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from telemetry_schema.runmodel import RunModel, divergences
from tui.widgets.header import silent_ranks


def _chip(text: Text, label: str, chosen: bool, style: str = "") -> None:
    text.append(f" {label} ", style=(style + " reverse bold").strip() if chosen else style)


def scope_text(session: RunModel, now: float) -> Text:
    """The selector's lines (empty Text for a one-rank, one-env run)."""
    scope = session.pending or session.scope
    ranks = session.state.ranks
    found = divergences(ranks)
    diverged = {d.rank for d in found}
    silent = set(silent_ranks(session, now))
    line = Text()
    if session.multi_rank:
        line.append("rank", style="bold")
        for r in session.ranks:
            mark = "✗" if r in diverged else "?" if r in silent else ""
            style = "red" if r in diverged else "yellow" if r in silent else ""
            _chip(line, f"{r}{mark}", r == scope.rank, style)
        line.append(" n/N ", style="grey62")
    if session.multi_env:
        line.append(" │ " if len(line) else "")
        line.append("env", style="bold")
        _chip(line, "all", scope.env is None)
        for e in session.envs:
            _chip(line, str(e), e == scope.env)
        line.append(" e/E", style="grey62")
    if session.pending is not None:
        line.append("  folding…", style="yellow")
    if ranks.divergence:
        detail = "; ".join(d.describe() for d in found) or ranks.divergence
        line.append("\n")
        line.append(f"⚠ ranks disagree: {detail}", style="bold red")
    return line


class ScopeBar(Static):
    """Shown (class ``-shown``) only when the run has more than one rank or environment."""

    shown: reactive[bool] = reactive(False)

    def watch_shown(self, shown: bool) -> None:
        self.set_class(shown, "-shown")

    def show(self, session: RunModel, now: float) -> None:
        self.shown = session.multi_rank or session.multi_env
        if self.shown:
            self.update(scope_text(session, now))
