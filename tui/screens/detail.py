"""Modal screens: one event's full fields, and one seed's whole history."""

from __future__ import annotations

import numpy as np
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from telemetry_schema.events import KINDS, field_docs
from telemetry_schema.fold import RunState, Series
from telemetry_schema.schema import ENVELOPE, SLOT_ENVELOPE
from tui import fmt
from tui.widgets.metrics import spec
from tui.widgets.plot import AsyncPlot


class EventDetail(ModalScreen):
    """Every envelope and payload field of one event, with the schema's field docs."""

    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close")]

    def __init__(self, envelope: dict, payload: dict) -> None:
        super().__init__()
        self.envelope, self.payload = envelope, payload

    def compose(self) -> ComposeResult:
        kind = self.envelope.get("kind", "?")
        docs = dict(field_docs(KINDS[kind])) if kind in KINDS else {}
        table = Table(title=fmt.text(f"{kind}  #{self.envelope.get('seq')}"), expand=True, show_lines=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        table.add_column("meaning", style="grey62")
        envelope_docs = {name: doc for name, _, doc in ENVELOPE + SLOT_ENVELOPE}
        envelope_docs["kind"] = "Event kind: the stream it was read from."
        # rich Table cells given as str are markup: every cell here is Text
        for k, v in self.envelope.items():
            table.add_row(fmt.text(k), fmt.text(v, multiline=True), Text(envelope_docs.get(k, "")))
        for k, v in self.payload.items():
            table.add_row(fmt.text(k, style="cyan"), fmt.text(v, multiline=True), Text(docs.get(k, "")))
        with VerticalScroll(id="detail-body"):
            yield Static(table, id="event-detail")


def seed_history(state: RunState, slot: str) -> tuple[str | None, list, list, int]:
    """(seed id, its stage spans, its gates, first seq) of the slot's current or last seed."""
    s = state.slots.get(slot)
    seed = s.seed_id if s and s.seed_id else None
    if seed is None:
        seeds = [sp.seed for sp in state.spans if sp.slot == slot and sp.seed]
        seed = seeds[-1] if seeds else None
    spans = [sp for sp in state.spans if sp.slot == slot and sp.seed == seed]
    gates = [g for g in state.gates if g.slot == slot and g.seed == seed]
    first = min([sp.start_seq for sp in spans] + [g.seq for g in gates], default=0)
    return seed, spans, gates, first


def _since(series: Series | None, first: int, y: str) -> tuple:
    if series is None or not len(series):
        return np.empty(0), np.empty(0)
    keep = series["seq"] >= first
    return series["step"][keep], series[y][keep]


class SeedDetail(ModalScreen):
    """The whole history of the seed in one slot: stages, gates, alpha, ratio, contribution."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, state: RunState, slot: str) -> None:
        super().__init__()
        self.state, self.slot = state, slot

    def compose(self) -> ComposeResult:
        seed, spans, gates, _ = seed_history(self.state, self.slot)
        s = self.state.slots.get(self.slot)
        head = fmt.text(f"slot {fmt.plain(self.slot)}  seed {fmt.plain(seed) or '—'}  ", style="bold")
        if s is not None:
            head.append_text(fmt.stage_text(s.stage))
            head.append(f"  blueprint {fmt.plain(s.blueprint) or '—'}  params {fmt.si(s.params)}  alpha {s.alpha:.2f}"
                        f"  contribution {fmt.num(s.contribution, 2)}pp")
        stages = Table(title="stages", expand=True)
        for col in ("stage", "from epoch", "to epoch"):
            stages.add_column(col)
        for sp in spans:
            stages.add_row(fmt.stage_text(sp.stage), str(sp.start_epoch),
                           "now" if sp.end_epoch is None else str(sp.end_epoch))
        gtable = Table(title="gates", expand=True)
        for col in ("epoch", "gate", "result", "checks"):
            gtable.add_column(col)
        for g in gates:
            gtable.add_row(str(g.epoch), fmt.text(g.gate), fmt.gate_text(g.passed),
                           fmt.text(", ".join(fmt.plain(c) for c in (g.checks_failed or g.checks_passed or ()))))
        with VerticalScroll(id="seed-body"):
            yield Static(head, id="seed-head")
            yield Static(stages, id="seed-stages")
            yield Static(gtable, id="seed-gates")
            with Grid(id="seed-plots"):
                yield AsyncPlot(id="seed-alpha")
                yield AsyncPlot(id="seed-ratio")
                yield AsyncPlot(id="seed-contrib")

    def on_mount(self) -> None:
        _, _, _, first = seed_history(self.state, self.slot)
        st, slot = self.state, self.slot
        log_y = self.app.chart.log_y
        self.query_one("#seed-alpha", AsyncPlot).draw(spec(
            "alpha", [(slot, *_since(st.alpha.get(slot), first, "value"))], xlabel="step", log_y=log_y))
        self.query_one("#seed-ratio", AsyncPlot).draw(spec(
            "gradient ratio", [(slot, *_since(st.grads.get(slot), first, "ratio"))], xlabel="step",
            hline=fmt.G2_THRESHOLD, log_y=log_y))
        self.query_one("#seed-contrib", AsyncPlot).draw(spec(
            "contribution pp", [(slot, *_since(st.counterfactuals.get(slot), first, "contribution"))],
            xlabel="step", log_y=log_y))
