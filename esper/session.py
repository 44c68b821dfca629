"""One training run end to end: task, model, controller, telemetry, final checkpoint.

``esper train`` and the end-to-end tests both go through ``run_training``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
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
from telemetry_schema.endings import STOP_SIGNALS, ending, exit_signals
from telemetry_schema.rundir import RunExists, RunWriter, exact_run_dir
from telemetry_schema.tags import write_tags

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
    # run id prefix (a timestamp is appended); with run_name_exact, the run id itself
    run_name_exact: bool = False
    # the run directory is exactly runs_dir/run_name and must not exist yet (RunExists otherwise)
    tags: tuple[str, ...] = ()
    # the user's tags on the run (telemetry_schema.tags), written when it starts
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
    init_seeds: list[tuple[str, str]] = field(default_factory=list)
    # (slot id, blueprint) seeds built and fossilized before epoch 1: a grown architecture from the start


@dataclass
class RunOutcome:
    run_dir: Path
    status: str
    summary: RunSummary
    host_params: int
    slot_ids: list[str]
    reason: str = ""
    # why the run ended as it did: '' when completed, 'SIGTERM' or 'KeyboardInterrupt' when interrupted


def make_controller(spec: RunSpec, topology: str | None = None):
    """The controller a spec names: 'heuristic', 'none' or 'policy:PATH' (a checkpoint of `esper ppo`).

    A policy that is not a usable checkpoint, or (given the host's ``topology``) was trained on
    another kind of host, raises a one-line ValueError before any training."""
    if spec.controller.startswith("policy:"):
        from esper.tamiyo.policy import load_policy_controller

        path = spec.controller.split(":", 1)[1]
        if not Path(path).is_file():
            raise FileNotFoundError(f"policy checkpoint {path} not found")
        controller = load_policy_controller(path)
        if topology and controller.topology and controller.topology != topology:
            raise ValueError(f"{path}: the policy was trained on a {controller.topology} host; "
                             f"this task has a {topology} host")
        return controller
    return HeuristicController(spec.heuristic) if spec.controller == "heuristic" else NoController()


def prepare_runs_dir(path: str | Path) -> Path:
    """Create the parent of run directories, or say in one line (ValueError) why it cannot be:
    a regular file on the way, a read-only or virtual file system (/sys, /proc), no permission."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--runs-dir {path}: not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".esper-write-test-{os.getpid()}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise ValueError(f"--runs-dir {path}: cannot create run directories there: {exc.strerror or exc}") from None
    return path


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

    Every end closes the log. Ctrl-C, SIGTERM and SIGHUP (``exit_signals``) end the run
    cleanly with status 'interrupted' (returned, not raised; the final weights are still
    saved); any other exception closes the log as 'failed' and is re-raised; a ``model.pt``
    that cannot be written closes it as 'failed' and raises ``ModelSaveError``.

    Under torchrun (WORLD_SIZE > 1) the run is data parallel: every rank joins the process group,
    rank 0 makes the run id and broadcasts it, each rank writes its own streams into the one run
    directory, trains on its shard of the batches through DDP (see ``Trainer``) and
    applies the lifecycle decisions rank 0 broadcasts. A dead rank makes the others' next
    collective fail within ``dist_timeout_s``: their logs close 'failed' naming the peer, and the
    ``RankFailure`` is re-raised. There SIGTERM comes from the launcher after a peer exited, so it
    closes the log as 'failed' too.
    """
    for warning in spec.fault.check(spec.train.epochs, spec.train.governor) if spec.fault else ():
        log.warning(warning)
    torch.manual_seed(spec.train.seed)
    if spec.train.device == "cpu" and spec.cpu_threads > 0:
        torch.set_num_threads(spec.cpu_threads)
    ctx = D.init_from_env(spec.train.device, spec.dist_timeout_s)
    try:
        return _run(spec, ctx, extra_sink, on_start)
    except D.RankFailure:
        # a process group left with a dead peer aborts the interpreter at exit (SIGABRT from gloo's
        # teardown, about one exit in four) instead of letting it exit with its status
        D.shutdown()
        raise


def _run(spec: RunSpec, ctx: D.DistContext, extra_sink: Sink | None,
         on_start: Callable[[Path], None] | None) -> RunOutcome:
    """``run_training`` once the process group (if any) is joined."""
    task, model = build_model(spec)
    controller = make_controller(spec, task.topology)
    config = {"run": dataclasses.asdict(spec) | {"fault": str(spec.fault)}}
    run_id, refused = D.agree(ctx, _name_run(spec, task.name) if ctx.is_main else None)
    if refused:  # on every rank: none waits for a run that will not start
        raise RunExists(refused)
    stops = tuple(s for s in STOP_SIGNALS if not (ctx.enabled and s == signal.SIGTERM))
    with exit_signals(stops):
        rw, event_sink = start_run(spec.runs_dir, run_id=run_id, task=task.name,
                                   topology=task.topology, host_params=model.host_param_count(),
                                   slot_ids=list(model.order), config=config, device=spec.train.device,
                                   torch_version=torch.__version__, rank=ctx.rank, world_size=ctx.world_size,
                                   on_error="drop" if spec.telemetry_errors == "continue" else "raise",
                                   planned_epochs=spec.train.epochs)
        if ctx.is_main and spec.tags:
            write_tags(rw.run_dir, list(spec.tags))
        status, reason, trainer = _train_and_close(spec, ctx, task, model, controller, rw,
                                                   MultiSink(event_sink, extra_sink) if extra_sink else event_sink,
                                                   on_start)
    if ctx.enabled:
        D.shutdown()
    if status == "failed":
        raise D.RankFailure(reason)
    return RunOutcome(rw.run_dir, status, trainer.summary, model.host_param_count(), list(model.order), reason)


def _name_run(spec: RunSpec, task_name: str) -> tuple[str, str]:
    """(run id, '') for rank 0 to share, or ('', why) when the exact run name is taken. An exact
    name's directory is made here, before the other ranks learn the id and join it."""
    if not (spec.run_name_exact and spec.run_name):
        return new_run_id(spec.run_name or task_name), ""
    try:
        exact_run_dir(spec.runs_dir, spec.run_name, create=True)
    except ValueError as exc:
        return "", str(exc)
    return spec.run_name, ""


def _train_and_close(spec: RunSpec, ctx: D.DistContext, task, model, controller, rw: RunWriter, sink: Sink,
                     on_start: Callable[[Path], None] | None):
    """Fit and save the model, then close the log however that ended: (status, reason, trainer)."""
    sampler = SystemSampler(rw.writer.emit, rw.writer.config.heartbeat_s, spec.train.device).start()
    previous_term = _raise_on_sigterm(ctx)
    hold = previous_term is not None
    try:
        if on_start is not None:
            on_start(rw.run_dir)
        train_loader = (D.ShardedLoader(task.train_loader, ctx.rank, ctx.world_size) if ctx.enabled
                        else task.train_loader)
        trainer = Trainer(model, train_loader, task.val_loader, num_classes=task.num_classes,
                          language=task.language, cfg=spec.train, controller=controller, sink=sink,
                          fault=spec.fault, dist=ctx)
        trainer.implant(spec.init_seeds)
        status, reason = _fit(trainer, ctx, model)
        if spec.save_model:
            save_model(model, rw.run_dir / ("model.pt" if ctx.is_main else f"model.rank{ctx.rank}.pt"))
    except D.RankFailure as exc:
        close_log(rw, "failed", f"rank {ctx.rank}: {D.peers_of(ctx)} failed or unreachable ({exc})",
                  hold_sigterm=hold)
        raise
    except BaseException as exc:
        close_log(rw, *ending(type(exc), exc), hold_sigterm=hold)
        raise
    finally:
        sampler.stop()
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    close_log(rw, status, reason, hold_sigterm=hold)
    return status, reason, trainer


def close_log(rw: RunWriter, status: str, reason: str, *, hold_sigterm: bool) -> None:
    """Close the run's log; with ``hold_sigterm`` (a rank under torchrun) SIGTERM is ignored
    meanwhile. A rank that found its peer dead is closing its log when the launcher, seeing the
    same death, SIGTERMs it: raised inside the close, that signal would cut it short and leave
    the log without its ``run_finished``. The handler is put back once the log is closed."""
    if not hold_sigterm:
        rw.close(status, reason)
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        rw.close(status, reason)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fit(trainer: Trainer, ctx: D.DistContext, model) -> tuple[str, str]:
    """Train to the end or to an interruption: (status, reason) for the log."""
    try:
        trainer.fit()
    except KeyboardInterrupt as exc:  # Ctrl-C, or a stop signal as RunInterrupted
        return ending(type(exc), exc)
    if ctx.enabled and not D.all_equal(ctx, _param_checksum(model)):
        return "failed", "parameters diverged across ranks"
    return "completed", ""


class ModelSaveError(RuntimeError):
    """The final weights could not be written (disk full, no permission, ...)."""


def save_model(model, path: Path) -> None:
    """The final state dict (CPU tensors) to ``path``; any failure -> one-line ``ModelSaveError``."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    try:
        torch.save(state, path)
    except (OSError, RuntimeError) as exc:  # torch reports some I/O failures as RuntimeError
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSaveError(f"could not save {path}: {detail}") from exc


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
