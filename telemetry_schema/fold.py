"""The run-state fold: what a log says about a run, shared by the TUI and the dashboard.

``Fold.update(tables)`` folds new events (a live poll, or a whole replayed log, as
``KindTables``) into ``Fold.state`` (a ``RunState``, see ``state.py``). Dense kinds (batch
metrics, scalars, gradient stats, alpha ticks, heartbeats, counterfactuals, rewards, PPO
updates, epochs) are folded column-wise with numpy; only the sparse lifecycle kinds (stage
changes, gates, governor, decisions, ...) are walked in Python, in the run's order, so a
million-event log folds without a per-event Python loop.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from telemetry_schema.arrays import codes, floats, from_numpy, to_numpy
from telemetry_schema.events import KINDS
from telemetry_schema.state import (  # noqa: F401  (re-exported for the viewers)
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
    wall_seconds,
)
from telemetry_schema.tables import KindTables

DENSE = ("scalar", "batch_metrics", "gradient_stats", "alpha", "heartbeat", "counterfactual",
         "reward", "ppo_update", "epoch_completed", "system")
_NOT_PROGRESS = ("heartbeat", "log", "system")


def _groups(col):
    """(value, boolean mask) for each distinct value of a string column, in first-seen order."""
    enc = pc.dictionary_encode(col)
    enc = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
    idx = codes(enc)
    if enc.indices.null_count:
        yield None, idx == -1
    for i, value in enumerate(enc.dictionary.to_pylist()):
        yield value, idx == i


def _num(table: pa.Table, name: str) -> np.ndarray:
    """A column as float numpy (nulls -> NaN)."""
    return floats(table.column(name))


def _envelope(table: pa.Table) -> dict[str, np.ndarray]:
    out = {"seq": to_numpy(table.column("seq")), "wall": wall_seconds(table.column("wall_time"))}
    for name in ("epoch", "step", "env"):
        if name in table.column_names:
            out[name] = to_numpy(table.column(name))
    return out


class Fold:
    """Folds event tables, in the run's order, into a ``RunState``."""

    def __init__(self, rank: int | None = 0, env: int | None = None) -> None:
        """Fold the events of one ``rank`` (None: all) and one ``env`` (None: all).

        Whatever the filter, every rank's lifecycle moves are compared (``state.ranks``).
        """
        self.state = RunState()
        self.rank = rank
        self.env = env
        if env is not None:
            self.state.envs.add(env)
        self._latest: dict[str, dict[str, tuple[int, object]]] = {}

    def update(self, chunk: KindTables) -> RunState:
        tables = {k: t for k, t in chunk.tables.items() if t.num_rows and k in KINDS}
        if not tables:
            return self.state
        self.state.ranks.update(tables)
        tables = {k: t for k, t in ((k, self._filter(k, t)) for k, t in tables.items()) if t.num_rows}
        if not tables:
            return self.state
        self._count(tables)
        for name in DENSE:
            if name in tables:
                getattr(self, "_dense_" + name)(tables[name], _envelope(tables[name]))
        self._fold_sparse({k: t for k, t in tables.items() if k not in DENSE})
        self._apply_latest()
        return self.state

    def _filter(self, kind: str, table: pa.Table) -> pa.Table:
        keep = None
        if self.rank is not None:
            keep = to_numpy(table.column("rank")) == self.rank
        if self.env is not None and "env" in table.column_names:
            in_env = to_numpy(table.column("env")) == self.env
            keep = in_env if keep is None else keep & in_env
        if keep is None or keep.all():
            return table
        return table.filter(from_numpy(keep))

    def _count(self, tables: dict[str, pa.Table]) -> None:
        st = self.state
        progress = []
        for kind, table in tables.items():
            n = table.num_rows
            st.events += n
            st.kind_counts[kind] += n
            st.last_seq = max(st.last_seq, pc.max(table.column("seq")).as_py())
            wall = pc.max(table.column("wall_time")).value / 1e6
            st.last_wall = wall if st.last_wall is None else max(st.last_wall, wall)
            first = pc.min(table.column("wall_time")).value / 1e6
            st.first_wall = first if st.first_wall is None else min(st.first_wall, first)
            if kind not in _NOT_PROGRESS:
                progress.append(wall)
            if "epoch" in table.column_names:
                st.epoch = max(st.epoch, pc.max(table.column("epoch")).as_py())
                st.step = max(st.step, pc.max(table.column("step")).as_py())
        if progress:
            st.last_progress_wall = max(progress + [st.last_progress_wall or 0.0])

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

    # -- dense kinds: (the kind's rows, their envelope columns as numpy) --------------------

    def _dense_scalar(self, t, env):
        values = _num(t, "value")
        for name, m in _groups(t.column("name")):
            series = self.state.scalars.setdefault(name or "", Series("step", "epoch", "value", "wall", "seq"))
            series.append(step=env["step"][m], epoch=env["epoch"][m], value=values[m], wall=env["wall"][m],
                          seq=env["seq"][m])

    def _dense_batch_metrics(self, t, env):
        # made when read (a run's batches are most of its log, and esper-tui shows only the
        # last throughput): rows lo..hi of the envelope and the payload
        def columns(lo: int, hi: int) -> dict[str, np.ndarray]:
            part = t.slice(lo, hi - lo)
            return {**{k: v[lo:hi] for k, v in env.items()},
                    **{n: _num(part, n) for n in ("loss", "lr", "samples_per_s")}}

        self.state.batches.append_lazy(t.num_rows, columns)

    def _dense_epoch_completed(self, t, env):
        cols = {n: _num(t, n) for n in ("train_loss", "train_acc", "val_loss", "val_acc", "perplexity",
                                        "host_params", "total_params", "seconds")}
        self.state.epochs.append(**env, **cols)
        last = t.column("per_class_acc")[-1].as_py()
        self.state.per_class_acc = last or []

    def _dense_gradient_stats(self, t, env):
        cols = {n: _num(t, n) for n in ("seed_norm", "host_norm", "ratio", "health", "vanishing", "exploding")}
        for slot, m in _groups(t.column("slot")):
            series = self.state.grads.setdefault(slot, Series(
                "epoch", "step", "seed_norm", "host_norm", "ratio", "health", "vanishing",
                "exploding", "wall", "seq"))
            series.append(**{k: v[m] for k, v in cols.items()}, **{k: v[m] for k, v in env.items() if k != "env"})
            r = cols["ratio"][m][-1]
            self._set_latest(slot, int(env["seq"][m][-1]), ratio=None if np.isnan(r) else float(r),
                             health=float(cols["health"][m][-1]), vanishing=bool(cols["vanishing"][m][-1]),
                             exploding=bool(cols["exploding"][m][-1]))

    def _dense_alpha(self, t, env):
        value, target = _num(t, "value"), _num(t, "target")
        modes = t.column("mode")
        for slot, m in _groups(t.column("slot")):
            mode = modes[int(np.flatnonzero(m)[-1])].as_py()
            series = self.state.alpha.setdefault(slot, Series("epoch", "step", "value", "target", "wall", "seq"))
            series.append(value=value[m], target=target[m], **{k: v[m] for k, v in env.items() if k != "env"})
            self._set_latest(slot, int(env["seq"][m][-1]), alpha=float(value[m][-1]),
                             alpha_target=float(target[m][-1]), alpha_mode=str(mode or ""))

    def _dense_counterfactual(self, t, env):
        cols = {n: _num(t, n) for n in ("real_acc", "off_acc", "contribution")}
        for slot, m in _groups(t.column("slot")):
            series = self.state.counterfactuals.setdefault(slot, Series(
                "epoch", "step", "real_acc", "off_acc", "contribution", "wall", "seq"))
            series.append(**{k: v[m] for k, v in cols.items()}, **{k: v[m] for k, v in env.items() if k != "env"})
            self._set_latest(slot, int(env["seq"][m][-1]), contribution=float(cols["contribution"][m][-1]))

    def _dense_heartbeat(self, t, env):
        pass  # counted and timed by update(); nothing else to fold

    def _dense_system(self, t, env):
        # plotted like any scalar, as system/<field>
        for name in t.column_names[len(env) + 1:]:
            series = self.state.scalars.setdefault(f"system/{name}", Series("step", "epoch", "value", "wall", "seq"))
            series.append(step=env["step"], epoch=env["epoch"], value=_num(t, name), wall=env["wall"], seq=env["seq"])

    def _dense_reward(self, t, env):
        self.state.rewards.append(**env, total=_num(t, "total"))
        self._fold_maps(self.state.reward_components, t.column("components").to_pylist(), env["seq"])

    def _dense_ppo_update(self, t, env):
        cols = {n: _num(t, n) for n in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction",
                                        "explained_variance", "lr", "early_stopped")}
        self.state.ppo.append(step=env["step"], wall=env["wall"], seq=env["seq"], **cols)
        self._fold_maps(self.state.head_entropy, t.column("head_entropy").to_pylist(), env["seq"])

    @staticmethod
    def _fold_maps(target: dict[str, Series], maps: list, seqs: np.ndarray) -> None:
        for seq, pairs in zip(seqs.tolist(), maps):
            for key, value in pairs or []:
                target.setdefault(key, Series("seq", "value")).append(
                    seq=np.array([seq]), value=np.array([np.nan if value is None else value]))

    # -- sparse kinds ----------------------------------------------------------------------

    def _fold_sparse(self, tables: dict[str, pa.Table]) -> None:
        records = []
        for kind, table in tables.items():
            handler = getattr(self, "_on_" + kind, None)
            if handler is None:
                continue
            # wall time as integer microseconds: datetimes with a time zone cost more to make
            table = table.set_column(1, "wall_time", pc.cast(table.column(1), pa.int64()))
            for rec in table.to_pylist():
                records.append(((rec["wall_time"], rec["rank"], rec["seq"]) if self.rank is None
                                else (rec["seq"],), handler, rec))
        records.sort(key=lambda r: r[0])
        for _, handler, rec in records:
            handler(rec)

    def _slot(self, slot_id: str | None) -> SlotState:
        key = slot_id or "?"
        s = self.state.slots.get(key)
        if s is None:
            s = self.state.slots[key] = SlotState(key)
            if key not in self.state.slot_ids:
                self.state.slot_ids.append(key)
        return s

    def _on_run_started(self, r):
        st = self.state
        st.run_id, st.task, st.topology = r["run_id"] or "", r["task"] or "", r["topology"] or ""
        st.host_params, st.device = r["host_params"] or 0, r["device"] or ""
        st.world_size, st.num_envs = r["world_size"] or 1, r["num_envs"] or 1
        st.planned_epochs = r["planned_epochs"] or 0
        st.heartbeat_s = r["heartbeat_s"] if r["heartbeat_s"] is not None else st.heartbeat_s
        st.versions = {"python": r["python_version"] or "", "torch": r["torch_version"] or ""}
        st.started_wall = r["wall_time"] / 1e6
        try:
            config = json.loads(r["config_json"] or "{}")
        except ValueError:
            config = {}
        st.config = config if isinstance(config, dict) else {"value": config}
        for slot in r["slot_ids"] or []:
            self._slot(slot)

    def _on_run_finished(self, r):
        self.state.end_status, self.state.end_reason = r["status"] or "failed", r["reason"] or ""

    def _on_log(self, r):
        self.state.logs.append((r["seq"], r["level"] or "", r["text"] or ""))

    def _on_seed_germinated(self, r):
        s = self._slot(r["slot"])
        s.seed_id, s.blueprint, s.params = r["seed"], r["blueprint"], r["params"]
        s.blend, s.tempo = r["blend"], r["tempo"]
        s.alpha = s.alpha_target = 0.0
        s.ratio = s.health = s.contribution = None
        s.last_gate = None
        s.reset_seq = r["seq"]
        self.state.resets.setdefault(s.slot_id, []).append(r["seq"])

    def _on_stage_changed(self, r):
        s = self._slot(r["slot"])
        epoch = r["epoch"]
        for span in reversed(self.state.spans):
            if span.slot == s.slot_id and span.end_epoch is None:
                span.end_epoch = epoch
                break
        to = r["to_stage"] or "?"
        s.stage, s.stage_since_epoch = to, epoch
        if r["seed"]:
            s.seed_id = r["seed"]
        if to == "DORMANT":
            s.seed_id = s.blueprint = None
            s.alpha = s.alpha_target = 0.0
            s.ratio = s.health = s.contribution = s.params = None
            s.last_gate = None
            s.reset_seq = r["seq"]
            self.state.resets.setdefault(s.slot_id, []).append(r["seq"])
        else:
            self.state.spans.append(StageSpan(s.slot_id, s.seed_id, to, epoch, r["seq"]))

    def _on_gate_evaluated(self, r):
        g = GateRecord(r["seq"], r["epoch"], r["slot"], r["seed"], r["gate"] or "", r["target_stage"] or "",
                       bool(r["passed"]), list(r["checks_passed"] or []), list(r["checks_failed"] or []))
        self.state.gates.append(g)
        if r["slot"]:
            self._slot(r["slot"]).last_gate = g

    def _on_seed_fossilized(self, r):
        self.state.marks.append(Mark(r["slot"], r["seed"], r["epoch"], r["seq"], "fossilized", r["reason"] or ""))

    def _on_seed_pruned(self, r):
        self.state.marks.append(Mark(r["slot"], r["seed"], r["epoch"], r["seq"], "pruned", r["reason"] or ""))

    def _on_governor_panic(self, r):
        self.state.governor.append(GovernorRecord(
            r["seq"], r["epoch"], "panic", r["reason"] or "", r["loss"], r["threshold"], r["mean"],
            r["std"], r["consecutive"]))

    def _on_governor_snapshot(self, r):
        self.state.governor.append(GovernorRecord(r["seq"], r["epoch"], "snapshot", r["reason"] or ""))

    def _on_governor_rollback(self, r):
        self.state.governor.append(GovernorRecord(
            r["seq"], r["epoch"], "rollback", r["reason"] or "", to_epoch=r["to_epoch"],
            seeds_pruned=list(r["seeds_pruned"] or [])))
        self.state.marks.append(Mark(None, None, r["epoch"], r["seq"], "rollback", r["reason"] or ""))

    def _on_controller_decision(self, r):
        self.state.decisions.append(Decision(
            r["seq"], r["epoch"], r["env"], r["controller"] or "", r["op"] or "", r["slot"],
            r["blueprint"], r["reason"] or "", dict(r["action_probs"] or []), r["value"]))


def fold_tables(tables: KindTables, rank: int | None = 0, env: int | None = None) -> RunState:
    """Fold a whole log at once (a replayed run)."""
    fold = Fold(rank, env)
    fold.update(tables)
    return fold.state
