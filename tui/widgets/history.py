"""History tables: gate evaluations, governor actions and controller decisions."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widgets import DataTable

from telemetry_schema.fold import Decision, GateRecord, GovernorRecord, RunState
from tui import fmt
from tui.fmt import text


def _names(values) -> str:
    """A list of names from a log (check codes, seed ids) as one line; nulls shown empty."""
    return ", ".join(fmt.plain(v) for v in values or ())


class HistoryTable(DataTable):
    """A table of records that only grow (live) or are cut back (replay going backwards)."""

    COLUMNS: tuple[str, ...] = ()
    BINDINGS = [("j", "cursor_down", "Down"), ("k", "cursor_up", "Up")]

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._shown = 0

    def on_mount(self) -> None:
        for name in self.COLUMNS:
            self.add_column(name)

    def records(self, state: RunState) -> list:
        raise NotImplementedError

    def row(self, record) -> tuple:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the rows shown: the next ``show`` draws another fold (another rank or env)."""
        self.clear()
        self._shown = 0

    def show(self, state: RunState) -> None:
        recs = self.records(state)
        if len(recs) < self._shown:
            self.clear()
            self._shown = 0
        if len(recs) > self._shown:
            follow = self.row_count == 0 or self.cursor_row >= self.row_count - 1
            self.add_rows(self.row(r) for r in recs[self._shown:])
            self._shown = len(recs)
            if follow:
                self.move_cursor(row=self.row_count - 1)


def _f(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    return str(value) if not math.isfinite(value) else f"{value:.{digits}f}"


class GatesTable(HistoryTable):
    COLUMNS = ("epoch", "slot", "seed", "gate", "→ stage", "result", "checks failed", "checks passed")

    def records(self, state: RunState) -> list[GateRecord]:
        return state.gates

    def row(self, g: GateRecord) -> tuple:
        style = "green" if g.passed else "bold red"
        return (str(g.epoch), text(g.slot or "—"), text(g.seed or "—"), text(g.gate), text(g.target_stage),
                Text("pass" if g.passed else "FAIL", style=style),
                text(_names(g.checks_failed) or "—", style="red" if g.checks_failed else "grey50"),
                text(_names(g.checks_passed)))


class GovernorTable(HistoryTable):
    COLUMNS = ("epoch", "kind", "reason", "loss", "threshold", "loss/thr", "detail")

    def records(self, state: RunState) -> list[GovernorRecord]:
        return state.governor

    def row(self, g: GovernorRecord) -> tuple:
        style = {"panic": "bold red", "rollback": "bold yellow", "snapshot": "grey62"}.get(g.kind, "")
        over = "—"
        if g.loss is not None and g.threshold and math.isfinite(g.threshold) and math.isfinite(g.loss):
            over = f"×{g.loss / g.threshold:.1f}"
        elif g.loss is not None and not math.isfinite(g.loss):
            over = "non-finite"
        detail = ""
        if g.kind == "panic":
            detail = f"#{g.consecutive} in a row, mean {_f(g.mean)} sd {_f(g.std)}"
        elif g.kind == "rollback":
            detail = f"to epoch {g.to_epoch}; pruned {_names(g.seeds_pruned) or 'none'}"
        return (str(g.epoch), text(g.kind, style=style), text(g.reason), _f(g.loss), _f(g.threshold),
                Text(over, style="red" if over != "—" else "grey50"), text(detail))


class DecisionsTable(HistoryTable):
    COLUMNS = ("epoch", "env", "controller", "op", "slot", "blueprint", "reason")

    def records(self, state: RunState) -> list[Decision]:
        return state.decisions

    def row(self, d: Decision) -> tuple:
        style = {"GERMINATE": "cyan", "FOSSILIZE": "green", "PRUNE": "red", "WAIT": "grey62"}.get(d.op, "")
        reason = fmt.plain(d.reason)
        if not reason and d.action_probs:
            probs = sorted((fmt.plain(k), v) for k, v in d.action_probs.items())
            reason = " ".join(f"{k}:{fmt.num(v, 2)}" for k, v in probs)
        return (str(d.epoch), str(d.env), text(d.controller), text(d.op, style=style), text(d.slot or "—"),
                text(d.blueprint or "—"), text(reason))
