"""The K environments split over worker processes, so a run uses every CPU core it is given.

Each worker holds a ``VecMorphEnv`` over its share of the environment indices and draws the same
batches from its own copy of the data stream (the stream is a pure function of its seed and pass
number), so a split run steps exactly as one process would: each environment keeps its index,
its host seed and its RNG stream. A worker pairs its environments with its own host-only shadows
(a shadow is cheap next to K environments, and sharing one across processes would need its
accuracies shipped every step).

Telemetry: a worker's events are recorded (``RecordingWriter``) and written by the parent after
each step, in environment order. Workers are spawned (no fork of a process running the log
writer's thread) and run torch on one thread each.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from esper.simic.collect import StepOutcome
from esper.simic.env import EnvConfig
from esper.simic.rewards import RewardConfig
from esper.simic.telemetry import EnvEventSink
from esper.tamiyo.policy.actions import ActionSpace
from esper.tamiyo.policy.bridge import BridgeConfig, PolicyBridge
from esper.tamiyo.policy.features import FeatureConfig
from esper.tamiyo.policy.network import ActResult


class RecordingWriter:
    """Stands in for an EventWriter in a worker: keeps every emit and scalar, with its position."""

    def __init__(self) -> None:
        self.epoch, self.step = 0, 0
        self.records: list[tuple] = []

    def emit(self, event, *, slot=None, seed=None, epoch=None, step=None, env=0) -> None:
        self.records.append(("emit", event, dict(slot=slot, seed=seed, env=env,
                                                 epoch=self.epoch if epoch is None else epoch,
                                                 step=self.step if step is None else step)))

    def scalar(self, name, value, *, step=None, epoch=None, env=0) -> None:
        self.records.append(("scalar", (name, value), dict(env=env, epoch=self.epoch if epoch is None else epoch,
                                                            step=self.step if step is None else step)))

    def take(self) -> list[tuple]:
        out, self.records = self.records, []
        return out


def replay(writer, records: Sequence[tuple]) -> None:
    """Write a worker's recorded events and scalars with ``writer``."""
    for kind, payload, kw in records:
        if kind == "emit":
            writer.emit(payload, **kw)
        else:
            writer.scalar(*payload, **kw)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker builds: its environment indices and the run's configurations."""

    indices: tuple[int, ...]
    cfg: EnvConfig
    reward_cfg: RewardConfig
    feature_cfg: FeatureConfig
    bridge_cfg: BridgeConfig
    first_episode: int
    data_passes: int
    record: bool
    # record telemetry for the parent to write
    teacher: str = "none"
    # the environments' teacher (esper.simic.teacher)


def _worker(conn, spec: WorkerSpec) -> None:
    """A worker's loop: build the environments, then answer observe / step / state / close."""
    from esper.simic.vec_env import VecMorphEnv
    torch.set_num_threads(1)
    try:
        rec = RecordingWriter()
        sinks = {"sink_factory": lambda i: EnvEventSink(rec, i)} if spec.record else {}
        env = VecMorphEnv(len(spec.indices), spec.cfg, spec.reward_cfg, spec.feature_cfg, bridge_cfg=spec.bridge_cfg,
                          first_episode=spec.first_episode, data_passes=spec.data_passes, indices=spec.indices,
                          teacher=spec.teacher, **sinks)
        conn.send(("ready", (env.space, env.bridge.topology, rec.take())))
        while True:
            cmd, arg = conn.recv()
            if cmd == "observe":
                out = env.observe()
            elif cmd == "step":
                out = (env.step(arg), [dict(i) for i in env.last_info])
            elif cmd == "teacher":
                out = env.teacher_actions()
            elif cmd == "state":
                out = (env.next_episode(), env.data_passes)
            elif cmd == "cpu":
                out = time.process_time()
            else:
                conn.send(("closed", None))
                return
            conn.send(("ok", (out, rec.take())))
    except (EOFError, KeyboardInterrupt):
        return
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", traceback.format_exc()))


class ProcVecEnv:
    """``num_envs`` environments over ``workers`` processes, behind the VecEnv protocol."""

    def __init__(self, num_envs: int, workers: int, cfg: EnvConfig, reward_cfg: RewardConfig,
                 feature_cfg: FeatureConfig, bridge_cfg: BridgeConfig, writer=None, first_episode: int = 0,
                 data_passes: int = 0, teacher: str = "none") -> None:
        if not 1 <= workers <= num_envs:
            raise ValueError(f"workers must be between 1 and the number of environments ({num_envs})")
        self.num_envs, self.writer = num_envs, writer
        self.critic_dim = cfg.critic_dim
        shares = [tuple(range(num_envs))[w::workers] for w in range(workers)]
        self.order = [i for share in shares for i in share]  # worker-major position -> env index
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for share in shares:
            parent, child = ctx.Pipe()
            spec = WorkerSpec(share, cfg, reward_cfg, feature_cfg, bridge_cfg, first_episode, data_passes,
                              writer is not None, teacher)
            proc = ctx.Process(target=_worker, args=(child, spec), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        ready = [self._receive(c) for c in self.conns]
        space, topology = ready[0][0], ready[0][1]
        self._write([r[2] for r in ready])
        self.space: ActionSpace = space
        self.bridge = PolicyBridge(space, topology, feature_cfg, bridge_cfg)
        self.last_info: list[dict] = [{} for _ in range(num_envs)]

    @property
    def obs_dim(self) -> int:
        return self.bridge.obs_dim + self.critic_dim

    def _receive(self, conn):
        try:
            status, payload = conn.recv()
        except EOFError:
            raise RuntimeError("an environment worker died") from None
        if status == "error":
            raise RuntimeError(f"an environment worker failed:\n{payload}")
        return payload

    def _call(self, cmd: str, args: Sequence | None = None) -> list:
        for i, c in enumerate(self.conns):
            c.send((cmd, args[i] if args is not None else None))
        results = [self._receive(c) for c in self.conns]
        self._write([r[1] for r in results])
        return [r[0] for r in results]

    def _write(self, records: list[list[tuple]]) -> None:
        if self.writer is not None:
            for r in records:
                replay(self.writer, r)

    def _unsplit(self, parts: list[Tensor]) -> Tensor:
        """Worker-major rows back into environment order."""
        cat = torch.cat(parts)
        out = torch.empty_like(cat)
        out[torch.tensor(self.order)] = cat
        return out

    def observe(self) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        parts = self._call("observe")
        feats = self._unsplit([p[0] for p in parts])
        masks = {k: self._unsplit([p[1][k] for p in parts]) for k in parts[0][1]}
        return feats, masks, self._unsplit([p[2] for p in parts])

    def teacher_actions(self) -> dict[str, Tensor] | None:
        """The workers' teacher labels, in environment order (None without a teacher)."""
        parts = self._call("teacher")
        if parts[0] is None:
            return None
        return {h: self._unsplit([p[h] for p in parts]) for h in parts[0]}

    def step(self, act: ActResult) -> StepOutcome:
        shares = [list(self._share(w)) for w in range(len(self.conns))]
        args = [self._slice(act, idx) for idx in shares]
        parts = self._call("step", args)
        outs = [p[0] for p in parts]
        infos = [i for p in parts for i in p[1]]
        for pos, info in zip(self.order, infos):
            self.last_info[pos] = info
        comps_by_env: dict[int, dict] = {}
        for share, o in zip(shares, outs):
            comps_by_env.update(zip(share, o.components))
        return StepOutcome(self._unsplit([o.rewards for o in outs]), self._unsplit([o.terminated for o in outs]),
                           self._unsplit([o.truncated for o in outs]), self._unsplit([o.final_obs for o in outs]),
                           [comps_by_env[i] for i in range(self.num_envs)])

    def _share(self, w: int) -> tuple[int, ...]:
        return tuple(range(self.num_envs))[w::len(self.conns)]

    @staticmethod
    def _slice(act: ActResult, idx: list[int]) -> ActResult:
        t = torch.tensor(idx)
        return ActResult({h: v[t] for h, v in act.actions.items()}, act.head_logp[t], act.value[t], None,
                         act.op_probs[t])

    def worker_cpu_seconds(self) -> list[float]:
        """CPU seconds each worker process has used so far."""
        return self._call("cpu")

    def next_episode(self) -> int:
        """An episode index no environment of any worker has used yet."""
        return max(e for e, _ in self._call("state"))

    @property
    def data_passes(self) -> int:
        return self._call("state")[0][1]

    def close(self) -> None:
        for c in self.conns:
            try:
                c.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()


def make_vec_env(num_envs: int, workers: int, cfg: EnvConfig, reward_cfg: RewardConfig, feature_cfg: FeatureConfig,
                 bridge_cfg: BridgeConfig, writer=None, first_episode: int = 0, data_passes: int = 0,
                 sink_factory: Callable | None = None, teacher: str = "none"):
    """One process (``workers`` <= 1: a VecMorphEnv) or several (a ProcVecEnv)."""
    if workers <= 1:
        from esper.simic.vec_env import VecMorphEnv
        kw = {"sink_factory": sink_factory} if sink_factory else {}
        return VecMorphEnv(num_envs, cfg, reward_cfg, feature_cfg, bridge_cfg=bridge_cfg,
                           first_episode=first_episode, data_passes=data_passes, teacher=teacher, **kw)
    return ProcVecEnv(num_envs, workers, cfg, reward_cfg, feature_cfg, bridge_cfg, writer, first_episode, data_passes,
                      teacher)
