"""The run-state fold: what a log says about a run, shared by the TUI and the dashboard.

``Fold.update(table)`` folds a table of new events (a live poll, or a whole replayed log)
into ``Fold.state`` (a ``RunState``, see ``state.py``). Dense kinds (batch metrics, scalars,
gradient stats, alpha ticks, heartbeats, counterfactuals, rewards, PPO updates, epochs) are
folded column-wise with numpy; only the sparse lifecycle kinds (stage changes, gates,
governor, decisions, ...) are walked in Python, so a million-event log folds without a
per-event Python loop.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_schema.arrays import codes, floats, from_numpy, take_rows, to_numpy
from telemetry_schema.state import (  # noqa: F401
    LIVE_STAGES,
    STAGES,
    Decision,
    GateRecord,
    GovernorRecord,
    Mark,
    RankCheck,
    RunState,
    Series,
    SlotState,
    StageSpan,
    _wall_seconds,
)

_DENSE = ("scalar", "batch_metrics", "gradient_stats", "alpha", "heartbeat", "counterfactual",
          "reward", "ppo_update", "epoch_completed")
_PROGRESS_EXCLUDED = ("heartbeat", "log")


_SLOTTED = frozenset({"gradient_stats", "alpha", "counterfactual"})
"""Dense kinds folded per slot (the others never read the slot column)."""
_WITH_ENV = frozenset({"reward", "epoch_completed"})
"""Dense kinds that keep the environment of each row."""


def _dense_rows(table: pa.Table, kind: str, rows: np.ndarray) -> pa.Table:
    """``kind``'s column (and the slot column, for a kind folded per slot) at ``rows``; the
    envelope comes from the numpy arrays ``update`` made once for the whole table. A kind
    holding most of the table (batch metrics in a training log) is filtered with a mask:
    ``take`` with a million indices costs several times more."""
    sub = table.select((("slot",) if kind in _SLOTTED else ()) + (kind,))
    if len(rows) == table.num_rows:
        return sub
    if len(rows) * 8 < table.num_rows:
        return take_rows(sub, rows)
    mask = np.zeros(table.num_rows, bool)
    mask[rows] = True
    return sub.filter(from_numpy(mask))


class _Envelope(Mapping):
    """The envelope columns of a kind's rows: numpy columns of the whole table, each gathered
    at the rows on first use (all of them: the columns themselves)."""

    def __init__(self, columns: dict[str, np.ndarray], rows: np.ndarray, every: bool) -> None:
        self._columns, self._rows, self._every = columns, rows, every
        self._gathered: dict[str, np.ndarray] = {}

    def __getitem__(self, key: str) -> np.ndarray:
        got = self._gathered.get(key)
        if got is None:
            column = self._columns[key]
            got = self._gathered[key] = column if self._every else column[self._rows]
        return got

    def __iter__(self):
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def part(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Every column at rows lo..hi of the kind's rows only."""
        return {k: c[lo:hi] if self._every else c[self._rows[lo:hi]] for k, c in self._columns.items()}


def _groups(col):
    """(value, boolean mask) for each distinct value of a string column, in first-seen order."""
    enc = pc.dictionary_encode(col)
    enc = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
    idx = codes(enc)
    values = enc.dictionary.to_pylist()
    if enc.indices.null_count:
        yield None, idx == -1
    for i, value in enumerate(values):
        yield value, idx == i


def _num(table: pa.Table, kind: str, name: str) -> np.ndarray:
    """A payload field of ``kind`` as a float numpy array (nulls -> NaN)."""
    return floats(pc.struct_field(table.column(kind), name))


class Fold:
    """Folds event tables, in stream order, into a ``RunState``."""

    def __init__(self, rank: int | None = 0, env: int | None = None) -> None:
        """Fold the events of one ``rank`` (None: all) and one ``env`` (None: all).

        Whatever the filter, every rank's lifecycle moves are compared (``state.ranks``).
        """
        self.state = RunState()
        self.rank = rank
        self.env = env
        self._latest: dict[str, dict[str, tuple[int, object]]] = {}

    def _set_latest(self, slot: str | None, seq: int, **values) -> None:
        """Remember a slot's newest dense values; applied after the sparse events of the batch."""
        latest = self._latest.setdefault(slot or "?", {})
        for key, value in values.items():
            latest[key] = (seq, value)

    def _apply_latest(self) -> None:
        for slot_id, values in self._latest.items():
            s = self._slot(slot_id)
            for key, (seq, value) in values.items():
                if seq > s.reset_seq:
                    setattr(s, key, value)
        self._latest.clear()

    def update(self, table: pa.Table) -> RunState:
        if table.num_rows == 0:
            return self.state
        ranks = to_numpy(table.column("rank"))
        wall = _wall_seconds(table.column("wall_time"))
        kinds = pc.dictionary_encode(table.column("kind")).combine_chunks()
        names = kinds.dictionary.to_pylist()
        kind_codes = codes(kinds)
        stage_rows = np.flatnonzero(kind_codes == names.index("stage_changed")) if "stage_changed" in names else None
        self.state.ranks.update(table, ranks, wall, stage_rows)
        # The rank and env filters pick rows by index: filtering the table itself would copy
        # every column of every kind (hundreds of bytes a row) to keep a few of them.
        keep = None
        if self.rank is not None:
            keep = ranks == self.rank
        if self.env is not None:
            in_env = to_numpy(table.column("env")) == self.env
            keep = in_env if keep is None else keep & in_env
            self.state.envs.add(self.env)
        if keep is not None and keep.all():
            keep = None
        if keep is not None and not keep.any():
            return self.state
        st = self.state
        if keep is not None:
            kind_codes = np.where(keep, kind_codes, -1)
        rows_by_kind = {name: rows for i, name in enumerate(names) if len(rows := np.flatnonzero(kind_codes == i))}
        columns = {name: to_numpy(table.column(name)) for name in ("seq", "epoch", "step")}
        columns["wall"] = wall
        kept = columns if keep is None else {k: v[keep] for k, v in columns.items()}
        st.events += len(kept["wall"])
        st.last_seq = int(kept["seq"].max())
        st.epoch = max(st.epoch, int(kept["epoch"].max()))
        st.step = max(st.step, int(kept["step"].max()))
        st.last_wall = float(kept["wall"].max())
        progress = np.zeros(len(wall), bool)
        for name, rows in rows_by_kind.items():
            st.kind_counts[name] += len(rows)
            if name not in _PROGRESS_EXCLUDED:
                progress[rows] = True
        if progress.any():
            st.last_progress_wall = float(wall[progress].max())
        if any(name in rows_by_kind for name in _WITH_ENV):
            columns["env"] = to_numpy(table.column("env"))
        for name in _DENSE:
            rows = rows_by_kind.get(name)
            if rows is not None:
                getattr(self, "_dense_" + name)(table, rows, _Envelope(columns, rows, len(rows) == table.num_rows))
        sparse = [(name, rows) for name, rows in rows_by_kind.items() if name not in _DENSE]
        self._fold_sparse(table, sparse)
        self._apply_latest()
        return st

    # -- dense kinds: (the table, the kind's rows in it, their envelope columns as numpy) -----

    def _by_slot(self, sub: pa.Table):
        yield from _groups(sub.column("slot"))

    def _dense_scalar(self, table, rows, envelope):
        sub = _dense_rows(table, "scalar", rows)
        values, wall = _num(sub, "scalar", "value"), envelope["wall"]
        for name, m in _groups(pc.struct_field(sub.column("scalar"), "name")):
            series = self.state.scalars.setdefault(name, Series("step", "epoch", "value", "wall", "seq"))
            series.append(step=envelope["step"][m], epoch=envelope["epoch"][m], value=values[m],
                          wall=wall[m], seq=envelope["seq"][m])

    def _dense_batch_metrics(self, table, rows, envelope):
        # Made when read (a run's batches are most of its log, and esper-tui shows only the
        # last throughput): rows lo..hi of the payload and of the envelope.
        def columns(lo: int, hi: int) -> dict[str, np.ndarray]:
            sub = _dense_rows(table, "batch_metrics", rows[lo:hi])
            return {**envelope.part(lo, hi),
                    **{n: _num(sub, "batch_metrics", n) for n in ("loss", "lr", "samples_per_s")}}

        self.state.batches.append_lazy(len(rows), columns)

    def _dense_epoch_completed(self, table, rows, envelope):
        sub = _dense_rows(table, "epoch_completed", rows)
        cols = {n: _num(sub, "epoch_completed", n) for n in
                ("train_loss", "train_acc", "val_loss", "val_acc", "perplexity", "host_params",
                 "total_params", "seconds")}
        self.state.epochs.append(epoch=envelope["epoch"], step=envelope["step"], wall=envelope["wall"],
                                 seq=envelope["seq"], env=envelope["env"], **cols)
        last = pc.struct_field(sub.column("epoch_completed"), "per_class_acc")[-1].as_py()
        self.state.per_class_acc = last or []

    def _dense_gradient_stats(self, table, rows, envelope):
        sub = _dense_rows(table, "gradient_stats", rows)
        cols = {n: _num(sub, "gradient_stats", n) for n in
                ("seed_norm", "host_norm", "ratio", "health", "vanishing", "exploding")}
        for slot, m in self._by_slot(sub):
            series = self.state.grads.setdefault(slot, Series(
                "epoch", "step", "seed_norm", "host_norm", "ratio", "health", "vanishing",
                "exploding", "wall", "seq"))
            series.append(**{k: v[m] for k, v in cols.items()},
                          **{k: v[m] for k, v in envelope.items()})
            r = cols["ratio"][m][-1]
            self._set_latest(slot, int(envelope["seq"][m][-1]), ratio=None if np.isnan(r) else float(r),
                             health=float(cols["health"][m][-1]),
                             vanishing=bool(cols["vanishing"][m][-1]),
                             exploding=bool(cols["exploding"][m][-1]))

    def _dense_alpha(self, table, rows, envelope):
        sub = _dense_rows(table, "alpha", rows)
        value, target = _num(sub, "alpha", "value"), _num(sub, "alpha", "target")
        modes = pc.struct_field(sub.column("alpha"), "mode")
        for slot, m in self._by_slot(sub):
            mode = modes[int(np.flatnonzero(m)[-1])].as_py()
            series = self.state.alpha.setdefault(slot, Series("epoch", "step", "value", "target", "wall", "seq"))
            series.append(value=value[m], target=target[m], **{k: v[m] for k, v in envelope.items()})
            self._set_latest(slot, int(envelope["seq"][m][-1]), alpha=float(value[m][-1]),
                             alpha_target=float(target[m][-1]), alpha_mode=str(mode))

    def _dense_counterfactual(self, table, rows, envelope):
        sub = _dense_rows(table, "counterfactual", rows)
        cols = {n: _num(sub, "counterfactual", n) for n in ("real_acc", "off_acc", "contribution")}
        for slot, m in self._by_slot(sub):
            series = self.state.counterfactuals.setdefault(slot, Series(
                "epoch", "step", "real_acc", "off_acc", "contribution", "wall", "seq"))
            series.append(**{k: v[m] for k, v in cols.items()}, **{k: v[m] for k, v in envelope.items()})
            self._set_latest(slot, int(envelope["seq"][m][-1]), contribution=float(cols["contribution"][m][-1]))

    def _dense_heartbeat(self, table, rows, envelope):
        pass  # counted and timed by update(); nothing else to fold

    def _dense_reward(self, table, rows, envelope):
        sub = _dense_rows(table, "reward", rows)
        self.state.rewards.append(env=envelope["env"], epoch=envelope["epoch"], step=envelope["step"],
                                  wall=envelope["wall"], seq=envelope["seq"], total=_num(sub, "reward", "total"))
        comps = pc.struct_field(sub.column("reward"), "components").to_pylist()
        self._fold_maps(self.state.reward_components, comps, envelope["seq"])

    def _dense_ppo_update(self, table, rows, envelope):
        sub = _dense_rows(table, "ppo_update", rows)
        cols = {n: _num(sub, "ppo_update", n) for n in
                ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction",
                 "explained_variance", "lr", "early_stopped")}
        self.state.ppo.append(step=envelope["step"], wall=envelope["wall"], seq=envelope["seq"], **cols)
        heads = pc.struct_field(sub.column("ppo_update"), "head_entropy").to_pylist()
        self._fold_maps(self.state.head_entropy, heads, envelope["seq"])

    @staticmethod
    def _fold_maps(target: dict[str, Series], maps: list, seqs: np.ndarray) -> None:
        for seq, pairs in zip(seqs.tolist(), maps):
            for key, value in pairs or []:
                target.setdefault(key, Series("seq", "value")).append(
                    seq=np.array([seq]), value=np.array([np.nan if value is None else value]))

    # -- sparse kinds ----------------------------------------------------------------------

    def _fold_sparse(self, table: pa.Table, sparse: list[tuple[str, np.ndarray]]) -> None:
        records = []
        envelope = ("seq", "epoch", "env", "slot", "seed", "wall_time")
        for name, rows in sparse:
            if name not in table.column_names:
                continue
            sub = take_rows(table.select(list(envelope) + [name]), rows)
            # wall time as integer microseconds: datetimes with a time zone cost more to make
            sub = sub.set_column(5, "wall_time", pc.cast(sub.column(5), pa.int64()))
            for idx, rec in zip(rows.tolist(), sub.to_pylist()):
                records.append((idx, name, rec))
        records.sort(key=lambda r: r[0])
        for _, name, rec in records:
            getattr(self, "_on_" + name)(rec, rec[name] or {})

    def _slot(self, slot_id: str | None) -> SlotState:
        key = slot_id or "?"
        s = self.state.slots.get(key)
        if s is None:
            s = self.state.slots[key] = SlotState(key)
            if key not in self.state.slot_ids:
                self.state.slot_ids.append(key)
        return s

    def _on_run_started(self, rec, p):
        st = self.state
        st.run_id, st.task, st.topology = p["run_id"], p["task"], p["topology"]
        st.host_params, st.device = p["host_params"], p["device"]
        st.world_size, st.num_envs, st.heartbeat_s = p["world_size"], p["num_envs"], p["heartbeat_s"]
        st.versions = {"python": p["python_version"], "torch": p["torch_version"]}
        if rec["wall_time"] is not None:
            st.started_wall = rec["wall_time"] / 1e6
        try:
            st.config = json.loads(p["config_json"] or "{}")
        except ValueError:
            st.config = {}
        for slot in p["slot_ids"] or []:
            self._slot(slot)

    def _on_run_finished(self, rec, p):
        self.state.end_status, self.state.end_reason = p["status"], p["reason"] or ""

    def _on_log(self, rec, p):
        self.state.logs.append((rec["seq"], p["level"], p["text"]))

    def _on_seed_germinated(self, rec, p):
        s = self._slot(rec["slot"])
        s.seed_id, s.blueprint, s.params = rec["seed"], p["blueprint"], p["params"]
        s.blend, s.tempo = p["blend"], p["tempo"]
        s.alpha = s.alpha_target = 0.0
        s.ratio = s.health = s.contribution = None
        s.last_gate = None
        s.reset_seq = rec["seq"]

    def _on_stage_changed(self, rec, p):
        s = self._slot(rec["slot"])
        epoch = rec["epoch"]
        for span in reversed(self.state.spans):
            if span.slot == s.slot_id and span.end_epoch is None:
                span.end_epoch = epoch
                break
        to = p["to_stage"]
        s.stage, s.stage_since_epoch = to, epoch
        if rec["seed"]:
            s.seed_id = rec["seed"]
        if to == "DORMANT":
            s.seed_id = s.blueprint = None
            s.alpha = s.alpha_target = 0.0
            s.ratio = s.health = s.contribution = s.params = None
            s.last_gate = None
            s.reset_seq = rec["seq"]
        else:
            self.state.spans.append(StageSpan(s.slot_id, s.seed_id, to, epoch, rec["seq"]))

    def _on_gate_evaluated(self, rec, p):
        g = GateRecord(rec["seq"], rec["epoch"], rec["slot"], rec["seed"], p["gate"], p["target_stage"],
                       bool(p["passed"]), list(p["checks_passed"] or []), list(p["checks_failed"] or []))
        self.state.gates.append(g)
        if rec["slot"]:
            self._slot(rec["slot"]).last_gate = g

    def _on_seed_fossilized(self, rec, p):
        self.state.marks.append(Mark(rec["slot"], rec["seed"], rec["epoch"], rec["seq"], "fossilized", p["reason"]))

    def _on_seed_pruned(self, rec, p):
        self.state.marks.append(Mark(rec["slot"], rec["seed"], rec["epoch"], rec["seq"], "pruned", p["reason"]))

    def _on_governor_panic(self, rec, p):
        self.state.governor.append(GovernorRecord(
            rec["seq"], rec["epoch"], "panic", p["reason"], p["loss"], p["threshold"], p["mean"],
            p["std"], p["consecutive"]))

    def _on_governor_snapshot(self, rec, p):
        self.state.governor.append(GovernorRecord(rec["seq"], rec["epoch"], "snapshot", p["reason"]))

    def _on_governor_rollback(self, rec, p):
        self.state.governor.append(GovernorRecord(
            rec["seq"], rec["epoch"], "rollback", p["reason"], to_epoch=p["to_epoch"],
            seeds_pruned=list(p["seeds_pruned"] or [])))
        self.state.marks.append(Mark(None, None, rec["epoch"], rec["seq"], "rollback", p["reason"]))

    def _on_controller_decision(self, rec, p):
        self.state.decisions.append(Decision(
            rec["seq"], rec["epoch"], rec["env"], p["controller"], p["op"], rec["slot"],
            p["blueprint"], p["reason"], dict(p["action_probs"] or []), p["value"]))


def fold_table(table: pa.Table) -> RunState:
    """Fold a whole table at once (a replayed log)."""
    fold = Fold()
    fold.update(table)
    return fold.state
