"""The slots table: one row per slot with its seed's stage, alpha, gradients, gate and value."""

from __future__ import annotations

import json

from rich.text import Text
from textual.widgets import DataTable

from telemetry_schema.fold import RunState, SlotState
from tui import fmt

COLUMNS = ("slot", "seed", "blueprint", "stage", "ep", "alpha", "ratio", "health", "gate", "contrib",
           "params")
LABELS = ("slot", "seed", "blueprint", "stage", "ep", "alpha", f"grad≥{fmt.G2_THRESHOLD:g}", "health",
          "gate", "contrib", "params")


def _pad(cell) -> Text:
    """Cells carry their own one-space gap so the table fits 80 columns (cell_padding=0)."""
    return Text.assemble(cell if isinstance(cell, Text) else Text(str(cell)), " ")


def slot_row(s: SlotState, epoch: int) -> tuple:
    """The cells of one slot's row (rich Text where colour carries meaning)."""
    alpha = Text(f"{fmt.bar(s.alpha, 3)} {s.alpha:.2f}", style=fmt.STAGE_STYLES.get(s.stage, ""))
    health = Text("—", style="grey50") if s.health is None else Text(
        f"{s.health:.2f}" + ("!" if s.exploding else "") + ("↓" if s.vanishing else ""),
        style="green" if s.health >= 0.9 and not (s.exploding or s.vanishing) else "yellow")
    gate = s.last_gate
    contrib = Text("—", style="grey50") if s.contribution is None else Text(
        f"{s.contribution:+.2f}", style="green" if s.contribution > 0 else "red")
    slot, seed = fmt.plain(s.slot_id), fmt.plain(s.seed_id) or "—"
    if slot and seed.startswith(slot + "-"):
        seed = seed[len(slot) + 1:]
    cells = (fmt.text(slot), fmt.text(seed), fmt.text(s.blueprint or "—"), fmt.stage_text(s.stage),
             str(max(0, epoch - s.stage_since_epoch)), alpha, fmt.ratio_text(s.ratio, short=True),
             health, fmt.gate_text(gate.passed if gate else None, gate.gate if gate else "", short=True),
             contrib, fmt.si(s.params) if s.params is not None else "—")
    return tuple(_pad(c) for c in cells)


def column_widths(rows: list[tuple], shown: list[int] | None = None) -> list[int]:
    """Each column's width: its label's or its widest cell's, never narrower than ``shown`` (the
    widths on screen), so that columns do not jump about as values change."""
    widths = [max([len(label) + 1] + [cell_width(r[i]) for r in rows]) for i, label in enumerate(LABELS)]
    return [max(w, s) for w, s in zip(widths, shown)] if shown else widths


def cell_width(cell) -> int:
    return cell.cell_len if hasattr(cell, "cell_len") else len(str(cell))


class SlotsTable(DataTable):
    """Slots of the host; Enter opens the selected slot's seed history."""

    BINDINGS = [("j", "cursor_down", "Down"), ("k", "cursor_up", "Up")]

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, cell_padding=0, **kwargs)

    def on_mount(self) -> None:
        for name, label in zip(COLUMNS, LABELS):
            self.add_column(label + " ", key=name)

    def show(self, state: RunState) -> None:
        ids = [i for i in (list(state.slot_ids) or list(state.slots)) if i in state.slots]
        rows = [slot_row(state.slots[i], state.epoch) for i in ids]
        keys = [slot_key(i) for i in ids]
        widths = column_widths(rows, [c.width for c in self.columns.values()] if self.rows else None)
        if [str(k.value) for k in self.rows] != keys or widths != [c.width for c in self.columns.values()]:
            # A column of fixed width never grows to fit a cell (DataTable.update_cell does not
            # widen it), so a wider cell (a seed germinated since) rebuilds the table at new widths.
            cursor = self.cursor_row
            self.clear(columns=True)
            for name, label, width in zip(COLUMNS, LABELS, widths):
                self.add_column(label + " ", key=name, width=width)
            for key, row in zip(keys, rows):
                self.add_row(*row, key=key)
            if rows:
                self.move_cursor(row=min(cursor, len(rows) - 1), animate=False)
            return
        for key, row in zip(keys, rows):
            for name, cell in zip(COLUMNS, row):
                self.update_cell(key, name, cell)

    def selected_slot(self) -> str | None:
        if not self.row_count:
            return None
        return slot_of_key(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)


def slot_key(slot_id: str | None) -> str:
    """A row key for a slot id, distinct for every id a log may hold ('', a null, look-alikes)."""
    return json.dumps(slot_id)


def slot_of_key(key: str) -> str | None:
    return json.loads(key)
