"""One training run end to end: task, model, controller, telemetry, final checkpoint.

``esper train`` and the end-to-end tests both go through ``run_training``.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from esper import distributed as D
from esper.kasmina.model import MorphogeneticModel
from esper.leyline.config import HeuristicConfig, SlotConfig, TrainConfig
from esper.nissa import MultiSink, Sink, new_run_id, start_run
from esper.nissa.system import SystemSampler
from esper.runtime.tasks import TaskOptions, build_task
from esper.tamiyo import HeuristicController, NoController
from esper.tolaria.trainer import FaultSpec, RunSummary, Trainer

log = logging.getLogger(__name__)


@dataclass
class RunSpec:
    """Everything a run needs; the CLI fills it from flags."""

    task: str = "synthetic-images"
    # task name (see esper.runtime.tasks)
    controller: str = "heuristic"
    # 'heuristic' or 'none'
    slots: list[str] | None = None
    # slot ids to enable; None = every slot of the host
    runs_dir: str = "runs"
    # parent directory of run directories
    run_name: str | None = None
    # run id prefix (a timestamp is appended)
    fault: FaultSpec | None = None
    # deliberate fault for governor demos
    train: TrainConfig = field(default_factory=TrainConfig)
    # loop, gates, governor and slot configuration
    heuristic: HeuristicConfig = field(default_factory=HeuristicConfig)
    # heuristic controller thresholds
    task_options: TaskOptions = field(default_factory=TaskOptions)
    # data options
    save_model: bool = True
    # write the final state dict to <run>/model.pt
    cpu_threads: int = 1
    # torch intra-op threads on CPU (0 = torch's default). The default CNN is tiny: extra threads
    # gain little, and OpenMP spin-waits made epochs ~25x slower when the 2 cores were shared
    dist_timeout_s: float = 60.0
    # under torchrun: seconds a collective waits for the other ranks before the run fails
    telemetry_errors: str = "stop"
    # a log that cannot be written (a full disk): 'stop' training with an error, or 'continue'
    # training without a log (the model is still saved)


@dataclass
class RunOutcome:
    run_dir: Path
    status: str
    summary: RunSummary
    host_params: int
    slot_ids: list[str]


def make_controller(spec: RunSpec):
    """The controller a spec names: 'heuristic', 'none' or 'policy:PATH' (a checkpoint of `esper ppo`)."""
    if spec.controller.startswith("policy:"):
        from esper.tamiyo.policy import load_policy_controller

        path = spec.controller.split(":", 1)[1]
        if not Path(path).is_file():
            raise FileNotFoundError(f"policy checkpoint {path} not found")
        return load_policy_controller(path)
    return HeuristicController(spec.heuristic) if spec.controller == "heuristic" else NoController()


def resolve_slots(text: str | None, available: list[str]) -> list[str] | None:
    """'all' / None -> every slot; a number N -> the last N; else a comma list of slot ids."""
    if text is None or text == "all":
        return None
    if text.isdigit():
        n = int(text)
        if not 0 <= n <= len(available):
            raise ValueError(f"--slots {n}: this host has {len(available)} slots")
        return available[len(available) - n:]
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise ValueError(f"unknown slot(s) {', '.join(unknown)}; this host has {', '.join(available)}")
    return wanted


def task_slot_config(task, slot_cfg: SlotConfig) -> SlotConfig:
    """``slot_cfg`` with the task's isolation choice where the config leaves it open (None).
    ``esper train`` and the PPO environments both build their models with it."""
    if slot_cfg.isolate_blending is None and task.isolate_blending is not None:
        return dataclasses.replace(slot_cfg, isolate_blending=task.isolate_blending)
    return slot_cfg


def build_model(spec: RunSpec, slots_text: str | None = None):
    """(task, model) for a spec, on the spec's device."""
    task = build_task(spec.task, dataclasses.replace(spec.task_options, seed=spec.train.seed))
    available = [s.slot_id for s in task.host.injection_specs()]
    slot_ids = spec.slots if spec.slots is not None else resolve_slots(slots_text, available)
    model = MorphogeneticModel(task.host, slot_ids, task_slot_config(task, spec.train.slot), spec.train.gradients)
    return task, model.to(spec.train.device)


def run_training(spec: RunSpec, extra_sink: Sink | None = None,
                 on_start: Callable[[Path], None] | None = None) -> RunOutcome:
    """Train, logging every event to ``runs_dir/<run_id>/events/``.

    KeyboardInterrupt ends the run cleanly with status 'interrupted' (returned, not raised);
    any other exception closes the log as 'failed' and is re-raised.

    Under torchrun (WORLD_SIZE > 1) the run is data parallel: every rank joins the process group,
    rank 0 makes the run id and broadcasts it, each rank writes its own streams into the one run
    directory, trains on its shard of the batches through DDP (see ``Trainer``) and
    applies the lifecycle decisions rank 0 broadcasts. A dead rank makes the others' next
    collective fail within ``dist_timeout_s``: their logs close 'failed' naming the peer, and the
    ``RankFailure`` is re-raised.
    """
    torch.manual_seed(spec.train.seed)
    if spec.train.device == "cpu" and spec.cpu_threads > 0:
        torch.set_num_threads(spec.cpu_threads)
    ctx = D.init_from_env(spec.train.device, spec.dist_timeout_s)
    task, model = build_model(spec)
    controller = make_controller(spec)
    config = {"run": dataclasses.asdict(spec) | {"fault": str(spec.fault)}}
    run_id = new_run_id(spec.run_name or task.name) if ctx.is_main else None
    run_id = D.agree(ctx, run_id)
    rw, event_sink = start_run(spec.runs_dir, run_id=run_id, task=task.name,
                               topology=task.topology, host_params=model.host_param_count(),
                               slot_ids=list(model.order), config=config, device=spec.train.device,
                               torch_version=torch.__version__, rank=ctx.rank, world_size=ctx.world_size,
                               on_error="drop" if spec.telemetry_errors == "continue" else "raise",
                               planned_epochs=spec.train.epochs)
    sampler = SystemSampler(rw.writer.emit, rw.writer.config.heartbeat_s, spec.train.device).start()
    if on_start is not None:
        on_start(rw.run_dir)
    sink = MultiSink(event_sink, extra_sink) if extra_sink else event_sink
    train_loader = D.ShardedLoader(task.train_loader, ctx.rank, ctx.world_size) if ctx.enabled else task.train_loader
    trainer = Trainer(model, train_loader, task.val_loader, num_classes=task.num_classes,
                      language=task.language, cfg=spec.train, controller=controller, sink=sink,
                      fault=spec.fault, dist=ctx)
    previous_term = _raise_on_sigterm(ctx)
    status, reason = "completed", ""
    try:
        trainer.fit()
        if ctx.enabled and not D.all_equal(ctx, _param_checksum(model)):
            status, reason = "failed", "parameters diverged across ranks"
    except KeyboardInterrupt:
        status, reason = "interrupted", "KeyboardInterrupt"
    except D.RankFailure as exc:
        rw.close("failed", f"rank {ctx.rank}: {D.peers_of(ctx)} failed or unreachable ({exc})")
        raise
    except BaseException as exc:
        rw.close("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        sampler.stop()
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    if spec.save_model:
        name = "model.pt" if ctx.is_main else f"model.rank{ctx.rank}.pt"
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, rw.run_dir / name)
    rw.close(status, reason)
    if ctx.enabled:
        D.shutdown()
    if status == "failed":
        raise D.RankFailure(reason)
    return RunOutcome(rw.run_dir, status, trainer.summary, model.host_param_count(), list(model.order))


def _param_checksum(model) -> torch.Tensor:
    """Per-tensor sums and sums of squares of every parameter and buffer (float64)."""
    parts = [torch.stack([t.detach().double().sum(), t.detach().double().pow(2).sum()])
             for t in model.state_dict().values() if t.is_floating_point()]
    return torch.cat(parts) if parts else torch.zeros(1, dtype=torch.float64)


def _raise_on_sigterm(ctx: D.DistContext):
    """Under torchrun, a peer's death makes the launcher SIGTERM the survivors: close the log."""
    if not ctx.enabled or threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        # once: a second SIGTERM must not cut short the close of the log that the first began
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise D.RankFailure("terminated by the launcher (SIGTERM) after another rank exited")

    return signal.signal(signal.SIGTERM, handler)
