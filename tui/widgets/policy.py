"""The policy panel: PPO curves, per-head entropy, reward components, action distribution."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from telemetry_schema.fold import RunState
from tui.fmt import plain, text

BARS = "▁▂▃▄▅▆▇█"
PPO_COLUMNS = (("policy_loss", "policy loss"), ("value_loss", "value loss"), ("entropy", "entropy"),
               ("approx_kl", "approx KL"), ("clip_fraction", "clip fraction"),
               ("explained_variance", "explained var"), ("lr", "lr"))
OPS = ("WAIT", "GERMINATE", "SET_ALPHA_TARGET", "PRUNE", "FOSSILIZE", "ADVANCE")


def sparkline(values: np.ndarray, width: int = 32) -> str:
    """The last ``width`` finite values as unicode bars scaled to their own range."""
    values = np.asarray(values, dtype=float)[-width:]
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return ""
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo or 1.0
    return "".join(BARS[min(len(BARS) - 1, int((v - lo) / span * len(BARS)))] for v in values)


def _fmt(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:.4g}"


def op_distribution(state: RunState, buckets: int = 4) -> list[tuple[str, Counter]]:
    """Share of each op among the policy's decisions, in ``buckets`` equal spans of the run."""
    decisions = [d for d in state.decisions if d.controller == "policy"] or state.decisions
    if not decisions:
        return []
    size = max(1, math.ceil(len(decisions) / buckets))
    spans = []
    for start in range(0, len(decisions), size):
        part = decisions[start:start + size]
        spans.append((f"epochs {part[0].epoch}–{part[-1].epoch}", Counter(d.op for d in part)))
    return spans


class PolicyPanel(Static):
    """What the learned controller is doing; says so when the log has no policy data."""

    def show(self, state: RunState) -> None:
        if not len(state.ppo) and not len(state.rewards):
            self.update(Text("no PPO updates or rewards in this log (runs of `esper ppo` have them)",
                             style="grey50"))
            return
        self.update(Group(self._ppo(state), self._heads(state), self._rewards(state), self._ops(state)))

    @staticmethod
    def _ppo(state: RunState) -> Table:
        t = Table(title=f"PPO updates ({len(state.ppo)})", title_justify="left", expand=True)
        for name in ("metric", "last", "trend"):
            t.add_column(name)
        for key, label in PPO_COLUMNS:
            col = state.ppo[key] if len(state.ppo) else np.empty(0)
            t.add_row(label, _fmt(col[-1]) if len(col) else "—", sparkline(col))
        stops = int(np.nansum(state.ppo["early_stopped"])) if len(state.ppo) else 0
        t.add_row("KL early stops", str(stops), "")
        return t

    @staticmethod
    def _heads(state: RunState) -> Table:
        t = Table(title="entropy per head", title_justify="left", expand=True)
        for name in ("head", "last", "trend"):
            t.add_column(name)
        for head, series in sorted(state.head_entropy.items(), key=lambda kv: plain(kv[0])):
            t.add_row(text(head), _fmt(series["value"][-1]), sparkline(series["value"]))
        return t

    @staticmethod
    def _rewards(state: RunState) -> Table:
        t = Table(title=f"reward ({len(state.rewards)} steps)", title_justify="left", expand=True)
        for name in ("component", "mean", "last", "trend"):
            t.add_column(name)
        rows = [("total", state.rewards["total"])] if len(state.rewards) else []
        rows += [(k, s["value"]) for k, s in sorted(state.reward_components.items(), key=lambda kv: plain(kv[0]))]
        for name, values in rows:
            t.add_row(text(name), _fmt(float(np.nanmean(values))), _fmt(values[-1]), sparkline(values))
        return t

    @staticmethod
    def _ops(state: RunState) -> Table:
        t = Table(title="actions over time (share of decisions)", title_justify="left", expand=True)
        t.add_column("span")
        for op in OPS:
            t.add_column(op.lower())
        for label, counts in op_distribution(state):
            total = sum(counts.values())
            t.add_row(label, *[f"{100 * counts.get(op, 0) / total:.0f}%" for op in OPS])
        return t
