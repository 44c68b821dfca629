"""Grow your own network on your own data: ``esper.Slot`` and ``esper.grow``.

Place ``esper.Slot`` modules in your model's ``forward`` (or name submodules whose outputs get a
slot), hand ``esper.grow`` the model, your DataLoaders and, if it is not cross-entropy, your
loss. It trains with the same lifecycle, gates, governor, controllers and telemetry as
``esper train``, writes a run directory that ``esper-tui`` and ``esper-dashboard`` open, and
returns the grown model.

Before training, the first batch of the validation loader goes through the model to find its
slots (``esper.slots`` says how and which layouts they take) and to check the loss and metric
on it. The slots stay bound after ``grow`` returns: your model's forward then runs through the
grown seeds.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

from telemetry_schema.endings import ending, exit_signals

from esper.leyline.config import HeuristicConfig, TrainConfig
from esper.log import claim_run_dir
from esper.nissa import MultiSink, Sink, start_run
from esper.slots import GrownModel, Slot, UserHost, find_slots, probe_slots, release_hooks, slot_specs
from esper.tolaria.objective import CLASSIFICATION, Objective
from esper.tolaria.trainer import RunSummary, Trainer

__all__ = ["Slot", "grow", "GrowResult", "GrownModel"]


@dataclass
class GrowResult:
    """What ``esper.grow`` returns."""

    model: GrownModel
    # your model and its seeds (its forward equals your model's, which now runs the seeds)
    run_dir: Path
    # the run directory (esper-tui RUN_DIR)
    status: str
    # 'completed' (errors, Ctrl-C, SIGTERM and SIGHUP are re-raised after the log is closed)
    summary: RunSummary
    # epochs, final and best validation score, seeds germinated / fossilized / pruned, rollbacks

    @property
    def seeds(self) -> dict[str, tuple[str, str | None]]:
        """slot id -> (stage, blueprint) at the end."""
        return {sid: (s.stage.name, s.record.blueprint if s.record else None) for sid, s in self.model.slots.items()}


def grow(model: nn.Module, train_loader: Iterable, val_loader: Iterable, *, epochs: int | None = None,
         loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
         metric: Callable[[Tensor, Tensor], Any] | None = None, slots: Iterable[str] = (),
         controller: str | Any = "heuristic", config: TrainConfig | None = None,
         heuristic: HeuristicConfig | None = None, runs_dir: str | Path = "runs", run_name: str | None = None,
         device: str | torch.device = "cpu", seed: int | None = 0, save_model: bool = True,
         sink: Sink | None = None) -> GrowResult:
    """Train ``model`` on ``train_loader`` while a controller grows seeds into its slots.

    Batches are ``(inputs, targets)`` pairs of tensors. ``loss_fn(outputs, targets)`` is the
    batch's mean loss (default: cross-entropy over the last dim of the outputs, integer
    targets). ``metric(outputs, targets)`` is the batch's score in percent, higher is better
    (default: argmax accuracy): the gates and the controller read it as "accuracy", so keep it
    on that scale. ``slots`` names submodules whose outputs also get a slot (besides every
    ``esper.Slot`` in the model). ``controller``: 'heuristic', 'none', 'policy:PATH' or a
    controller object. ``config`` is the loop's ``TrainConfig`` (``epochs`` replaces its
    epochs); ``heuristic`` the heuristic's thresholds. ``seed`` seeds torch's global RNG (seed
    weights, None leaves it alone). ``sink`` also receives every core event (e.g. a progress
    display). The host and each seed get AdamW optimizers of their own (lrs in ``config``).
    """
    cfg = _train_config(config, epochs, device)
    for which, loader in (("train_loader", train_loader), ("val_loader", val_loader)):
        if iter(loader) is loader:
            raise TypeError(f"{which} is a one-shot iterator; pass something each epoch can iterate "
                            f"again (a DataLoader, a list of batches)")
    controller = _controller(controller, heuristic)
    if seed is not None:
        torch.manual_seed(seed)
    found = find_slots(model, list(slots))
    try:
        first = _first_batch(val_loader)
        outputs = probe_slots(model, found, first[0])
        specs, topology = slot_specs(found)
        objective, num_classes = _objective(loss_fn, metric, outputs, first[1])
    except BaseException:
        release_hooks(found)  # leave the model as it was: no hook behind
        raise
    if loss_fn is not None:  # the governor's absolute floors are in units of ln(num_classes)
        cfg = dataclasses.replace(cfg, governor=dataclasses.replace(
            cfg.governor, floor_fraction=0.0, lobotomy_tolerance=0.0))
    grown = GrownModel(UserHost(model, specs, topology), None, cfg.slot, cfg.gradients)
    for slot, spec in zip(found, specs):
        slot.bind(grown.slots[spec.slot_id])
    grown.to(cfg.device)
    language = outputs.dim() == 3 and loss_fn is None
    run_cfg = {"grow": {"model": type(model).__name__, "train": dataclasses.asdict(cfg),
                        "loss_fn": _name(loss_fn), "metric": _name(metric), "seed": seed,
                        "controller": str(controller)}}
    return _train(grown, train_loader, val_loader, cfg, objective, num_classes, language, controller,
                  run_cfg, claim_run_dir(runs_dir, run_name or type(model).__name__), save_model, sink)


def _train_config(config: TrainConfig | None, epochs: int | None, device) -> TrainConfig:
    cfg = config or TrainConfig()
    if epochs is not None:
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive int, got {epochs!r}")
        cfg = dataclasses.replace(cfg, epochs=epochs)
    return dataclasses.replace(cfg, device=str(torch.device(device)))


def _first_batch(loader: Iterable) -> tuple[Tensor, Tensor]:
    try:
        batch = next(iter(loader))
    except StopIteration:
        raise ValueError("the validation loader yielded no batch") from None
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(f"batches must be (inputs, targets) pairs; the validation loader gave "
                        f"{type(batch).__name__}{f' of {len(batch)}' if isinstance(batch, (tuple, list)) else ''}")
    return batch[0], batch[1]


def _objective(loss_fn, metric, outputs: Tensor, targets: Tensor) -> tuple[Objective, int]:
    """The run's objective, checked on the probe batch, and the class count the score uses."""
    integer = not targets.is_floating_point() and not targets.is_complex()
    if (loss_fn is None or metric is None) and not integer:
        raise ValueError(f"targets are {targets.dtype}: the default loss and metric need integer class "
                         f"labels; pass loss_fn= and metric= for other targets")
    if metric is None:
        objective = Objective(loss=loss_fn or CLASSIFICATION.loss)
    else:
        def hits(out: Tensor, y: Tensor) -> Tensor:
            return torch.as_tensor(metric(out, y), dtype=torch.float32, device=out.device) * len(y) / 100.0
        objective = Objective(loss=loss_fn or CLASSIFICATION.loss, hits=hits, weight=_batch_size, per_class=False)
    num_classes = outputs.shape[-1] if outputs.dim() >= 2 else 2
    if objective.per_class and integer and targets.numel() and int(targets.max()) >= num_classes:
        raise ValueError(f"target {int(targets.max())} is outside the model's {num_classes} outputs")
    try:
        y = targets.to(outputs.device)
        with torch.no_grad():
            loss = objective.loss(outputs, y)
            float(objective.hits(outputs, y))
    except Exception as exc:
        raise ValueError(f"the loss or metric fails on the first validation batch (outputs "
                         f"{tuple(outputs.shape)}, targets {tuple(targets.shape)}): "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError("loss_fn must return a single-element tensor (the batch's mean loss)")
    return objective, max(2, num_classes)


def _batch_size(targets: Tensor) -> int:
    return len(targets)


def _name(fn) -> str | None:
    return None if fn is None else getattr(fn, "__qualname__", None) or type(fn).__name__


def _controller(controller, heuristic: HeuristicConfig | None):
    if not isinstance(controller, str):
        return controller
    from esper.session import RunSpec, make_controller
    if controller not in ("heuristic", "none") and not controller.startswith("policy:"):
        raise ValueError(f"controller {controller!r}: expected heuristic, none, policy:PATH or a controller")
    return make_controller(RunSpec(controller=controller, heuristic=heuristic or HeuristicConfig()))


def _train(model: GrownModel, train_loader, val_loader, cfg: TrainConfig, objective: Objective,
           num_classes: int, language: bool, controller, run_cfg: dict, run_dir: Path,
           save_model: bool, extra: Sink | None) -> GrowResult:
    task = run_cfg["grow"]["model"]
    rw, event_sink = start_run(run_dir.parent, run_id=run_dir.name, task=task, topology=model.topology,
                               host_params=model.host_param_count(), slot_ids=list(model.order),
                               config=json.loads(json.dumps(run_cfg, default=str)), device=cfg.device,
                               torch_version=torch.__version__)
    trainer = Trainer(model, train_loader, val_loader, num_classes=num_classes, language=language, cfg=cfg,
                      controller=controller, sink=MultiSink(event_sink, extra) if extra else event_sink,
                      objective=objective)
    with exit_signals():  # SIGTERM and SIGHUP raise RunInterrupted (a KeyboardInterrupt) here
        try:
            trainer.fit()
            if save_model:
                torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, rw.run_dir / "model.pt")
        except BaseException as exc:
            rw.close(*ending(type(exc), exc))
            raise
        rw.close("completed")
    return GrowResult(model, rw.run_dir, "completed", trainer.summary)
