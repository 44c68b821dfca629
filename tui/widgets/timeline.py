"""The lifecycle timeline: one coloured lane per slot over epochs, with fossilize/prune/rollback
marks, and a governor lane with panics and rollbacks."""

from __future__ import annotations

from itertools import groupby

from rich.text import Text
from textual.widget import Widget

from telemetry_schema.fold import RunState
from tui import fmt

LABEL = 7


def stage_at(spans: list, epoch: float) -> str | None:
    """The stage of a slot's lane at ``epoch`` (spans of that slot, in start order)."""
    stage = None
    for span in spans:
        if span.start_epoch > epoch:
            break
        stage = span.stage if span.end_epoch is None or span.end_epoch > epoch else None
    return stage


def timeline_lines(state: RunState, width: int) -> list[Text]:
    cols = max(10, width - LABEL)
    last = max(state.epoch, 1)
    epoch_of = [c * last / (cols - 1) for c in range(cols)]
    col_of = (lambda e: min(cols - 1, max(0, round(e * (cols - 1) / last))))
    lines = []
    for slot in (state.slot_ids or list(state.slots)):
        spans = [s for s in state.spans if s.slot == slot]
        cells = [(" ", "")] * cols
        for c, e in enumerate(epoch_of):
            stage = stage_at(spans, e)
            if stage:
                cells[c] = ("█", fmt.STAGE_STYLES.get(stage, ""))
            else:
                cells[c] = ("·", "grey30")
        for m in state.marks:
            if m.slot == slot:
                cells[col_of(m.epoch)] = fmt.MARK_GLYPHS[m.kind]
        lines.append(_lane(fmt.plain(slot), cells))
    gov = [("─", "grey30")] * cols
    for g in state.governor:
        if g.kind == "panic":
            gov[col_of(g.epoch)] = ("!", "bold red")
    for m in state.marks:
        if m.kind == "rollback":
            gov[col_of(m.epoch)] = fmt.MARK_GLYPHS["rollback"]
    lines.append(_lane("gov", gov))
    axis = Text(" " * LABEL + "0", style="grey62")
    label = f"epoch {last}"
    axis.append(label.rjust(cols - 1), style="grey62")
    lines.append(axis)
    lines.extend(legend_lines(width))
    return lines


LEGEND_STAGES = ("GERMINATED", "TRAINING", "BLENDING", "HOLDING", "FOSSILIZED", "PRUNED", "EMBARGOED")


def legend_lines(width: int) -> list[Text]:
    """The key to the lanes' colours and marks, every name whole, wrapped to ``width`` cells."""
    items = [("█", fmt.STAGE_STYLES[stage], stage.lower()) for stage in LEGEND_STAGES]
    items += [(glyph, style, kind) for kind, (glyph, style) in fmt.MARK_GLYPHS.items()]
    items.append(("!", "bold red", "panic"))
    lines = [Text(" " * LABEL)]
    for glyph, style, name in items:
        if lines[-1].cell_len + len(name) + 1 > width and lines[-1].cell_len > LABEL:
            lines.append(Text(" " * LABEL))
        lines[-1].append(glyph, style=style)
        lines[-1].append(name + " ")
    return lines


def _lane(label: str, cells: list[tuple[str, str]]) -> Text:
    """A lane's label and cells; a run of cells of one style is one span (a span per cell made
    the timeline a fifth of the first screen's paint)."""
    text = Text(label[: LABEL - 1].ljust(LABEL), style="bold")
    for style, run in groupby(cells, key=lambda cell: cell[1]):
        text.append("".join(glyph for glyph, _ in run), style=style)
    return text


class Timeline(Widget):
    """Renders the lanes of the last state shown."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._state: RunState | None = None

    def show(self, state: RunState) -> None:
        self._state = state
        self.refresh()

    def render(self) -> Text:
        if self._state is None:
            return Text("no events yet", style="grey50")
        lines = timeline_lines(self._state, self.size.width)
        text = Text("\n").join(lines)
        text.no_wrap = True
        text.overflow = "crop"
        return text
