"""Grow your own network on your own data: ``esper.Slot`` and ``esper.grow``.

Place ``esper.Slot`` modules in your model's ``forward`` (or name submodules whose outputs get a
slot), hand ``esper.grow`` the model, your DataLoaders and, if it is not cross-entropy, your
loss. It trains with the same lifecycle, gates, governor, controllers and telemetry as
``esper train``, writes a run directory that ``esper-tui`` and ``esper-dashboard`` open, and
returns the grown model.

Before training, one batch of the validation loader goes through the model (eval mode, no
gradient) to find the slots in forward order, their feature shapes and the output's shape.
Every slot of one model must have features of one layout (its topology):

    (B, C, H, W) cnn    (B, C, L) conv1d    (B, C) mlp    (B, T, C) transformer

A 3-D feature is (B, C, L) when its dim 1 equals the slot's ``channels`` and (B, T, C) when
its last dim does; give ``channels`` (or ``topology``) for 3-D features. The slots stay bound
after ``grow`` returns: your model's forward then runs through the grown seeds.
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

from esper.kasmina.layouts import LAYOUTS, layout
from esper.kasmina.model import MorphogeneticModel
from esper.kasmina.protocol import InjectionSpec
from esper.leyline.config import HeuristicConfig, TrainConfig
from esper.log import claim_run_dir
from esper.nissa import MultiSink, Sink, start_run
from esper.tolaria.objective import CLASSIFICATION, Objective
from esper.tolaria.trainer import RunSummary, Trainer

__all__ = ["Slot", "grow", "GrowResult", "GrownModel"]


class Slot(nn.Module):
    """A place in your ``forward`` where Esper may grow a seed: ``h = self.slot(h)``.

    The identity until ``esper.grow`` binds it to a seed slot; from then on your model runs
    through whatever seed the slot holds (none, training, blending or fossilized). ``channels``
    is checked against the features it sees (and tells (B, C, L) from (B, T, C)); ``topology``
    forces the layout; ``name`` is the slot's id in the logs (default: its attribute path).
    """

    def __init__(self, channels: int | None = None, *, topology: str | None = None,
                 name: str | None = None) -> None:
        super().__init__()
        if channels is not None and (not isinstance(channels, int) or channels < 1):
            raise ValueError(f"Slot channels must be a positive int, got {channels!r}")
        if topology is not None:
            layout(topology)
        self.channels, self.topology, self.name = channels, topology, name
        self._probe = _Probe()

    def forward(self, x: Tensor) -> Tensor:
        bound = self.__dict__.get("_bound")  # a SeedSlot kept out of this module's children
        if bound is None:
            self._probe.saw(x)
            return x
        return bound(x)

    def bind(self, slot: nn.Module | None) -> None:
        """Route this slot through ``slot`` (a ``SeedSlot``), without registering it here: the
        grown model owns it, so its parameters appear once, under the grown model's ``slots``."""
        object.__setattr__(self, "_bound", slot)

    @property
    def bound(self) -> bool:
        return self.__dict__.get("_bound") is not None

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in (("channels", self.channels), ("topology", self.topology),
                                                    ("name", self.name)) if v is not None)


class _Probe:
    """Feature shapes a slot saw during the probe pass (plain object: not module state)."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.order: list[int] = []
        self.counter: list[int] | None = None

    def saw(self, x: Any) -> None:
        if self.counter is None:
            return
        if not isinstance(x, Tensor):
            raise TypeError(f"a slot received {type(x).__name__}; slots take a feature tensor")
        self.shapes.append(tuple(x.shape))
        self.order.append(self.counter[0])
        self.counter[0] += 1


class _HookSlot:
    """A slot on the output of a named submodule, through a forward hook."""

    def __init__(self, module: nn.Module, path: str) -> None:
        self.channels, self.topology, self.name, self.path = None, None, None, path
        self._probe, self._bound = _Probe(), None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self._bound is None:
            self._probe.saw(output)
            return None
        if not isinstance(output, Tensor):
            raise TypeError(f"slot on {self.path!r}: the module returned {type(output).__name__}, not a tensor")
        return self._bound(output)

    def bind(self, slot: nn.Module | None) -> None:
        self._bound = slot

    @property
    def bound(self) -> bool:
        return self._bound is not None


class _UserHost(nn.Module):
    """The user's module as a host: its slots are specs, its forward is the model's."""

    def __init__(self, net: nn.Module, specs: list[InjectionSpec], topology: str) -> None:
        super().__init__()
        self.net, self.topology, self._specs = net, topology, specs

    def injection_specs(self) -> list[InjectionSpec]:
        return list(self._specs)

    @property
    def segment_channels(self) -> dict[str, int]:
        return {s.slot_id: s.channels for s in self._specs}

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class GrownModel(MorphogeneticModel):
    """Your model with its slots: ``host.net`` is your module, ``slots`` the seed slots. Its
    state dict holds both; ``forward`` is your model's (which calls the slots)."""

    def forward(self, x: Tensor) -> Tensor:
        return self.host(x)


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
    found = _find_slots(model, list(slots))
    try:
        first = _first_batch(val_loader)
        outputs = _probe(model, found, first[0])
        specs, topology = _specs(found)
        objective, num_classes = _objective(loss_fn, metric, outputs, first[1])
    except BaseException:
        for slot in found:  # leave the model as it was: no hook behind
            if isinstance(slot, _HookSlot):
                slot.handle.remove()
        raise
    if loss_fn is not None:  # the governor's absolute floors are in units of ln(num_classes)
        cfg = dataclasses.replace(cfg, governor=dataclasses.replace(
            cfg.governor, floor_fraction=0.0, lobotomy_tolerance=0.0))
    grown = GrownModel(_UserHost(model, specs, topology), None, cfg.slot, cfg.gradients)
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


def _find_slots(model: nn.Module, names: list[str]) -> list:
    if not isinstance(model, nn.Module):
        raise TypeError(f"grow needs an nn.Module, got {type(model).__name__}")
    found = []
    for path, module in model.named_modules():
        if isinstance(module, Slot):
            if module.bound:
                raise ValueError(f"slot {path!r} is already bound to a grown model; grow a fresh model")
            module.path = path
            found.append(module)
    modules = dict(model.named_modules())
    for name in names:  # all checked before any hook is added
        if name not in modules or name == "":
            raise ValueError(f"slots: no submodule named {name!r} in {type(model).__name__}")
    found += [_HookSlot(modules[name], name) for name in names]
    if not found:
        raise ValueError("no slot: put esper.Slot(channels) modules in the model's forward, or name "
                         "submodules with slots=[...]")
    return found


def _first_batch(loader: Iterable) -> tuple[Tensor, Tensor]:
    try:
        batch = next(iter(loader))
    except StopIteration:
        raise ValueError("the validation loader yielded no batch") from None
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(f"batches must be (inputs, targets) pairs; the validation loader gave "
                        f"{type(batch).__name__}{f' of {len(batch)}' if isinstance(batch, (tuple, list)) else ''}")
    return batch[0], batch[1]


def _probe(model: nn.Module, found: list, x: Tensor) -> Tensor:
    """One forward pass (eval, no gradient) that records each slot's features and order."""
    counter = [0]
    for slot in found:
        slot._probe.counter, slot._probe.shapes, slot._probe.order = counter, [], []
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            out = model(x.to(device))
    finally:
        model.train(was_training)
        for slot in found:
            slot._probe.counter = None
    if not isinstance(out, Tensor):
        raise TypeError(f"the model returned {type(out).__name__}; grow needs a tensor output")
    for slot in found:
        where = getattr(slot, "path", "?")
        if not slot._probe.shapes:
            raise ValueError(f"slot {where!r} was not called in the forward pass")
        if len(slot._probe.shapes) > 1:
            raise ValueError(f"slot {where!r} is called {len(slot._probe.shapes)} times per forward; "
                             f"use one slot per place")
    found.sort(key=lambda s: s._probe.order[0])
    return out


def _specs(found: list) -> tuple[list[InjectionSpec], str]:
    """One spec per slot, in forward order, and the topology they share."""
    specs, topologies, ids = [], {}, set()
    for i, slot in enumerate(found):
        topology, channels = _read_layout(slot, slot._probe.shapes[0])
        topologies[slot.path] = topology
        slot_id = slot.name or slot.path.replace(".", "_")
        if "." in slot_id or not slot_id or slot_id in ids:
            raise ValueError(f"slot id {slot_id!r} (of {slot.path!r}) is empty, has a dot or is taken; "
                             f"give the Slot a name=")
        ids.add(slot_id)
        specs.append(InjectionSpec(slot_id, channels, i))
    kinds = set(topologies.values())
    if len(kinds) > 1:
        raise ValueError("slots of one model must share a feature layout; got "
                         + ", ".join(f"{p}: {t}" for p, t in topologies.items()))
    return specs, kinds.pop()


def _read_layout(slot, shape: tuple[int, ...]) -> tuple[str, int]:
    """(topology, channels) of a slot from its feature shape (see the module docstring)."""
    where, c = slot.path, slot.channels
    topology = slot.topology or {4: "cnn", 2: "mlp"}.get(len(shape))
    if topology is None and len(shape) == 3:
        if c is None or (shape[1] == c) == (shape[2] == c):
            raise ValueError(f"slot {where!r}: 3-D features {shape} are (B, C, L) or (B, T, C); "
                             f"give the slot channels= (or topology='conv1d' or 'transformer')")
        topology = "conv1d" if shape[1] == c else "transformer"
    if topology is None:
        raise ValueError(f"slot {where!r}: features of shape {shape}; slots take 2-D, 3-D or 4-D features")
    dims = LAYOUTS[topology]
    if len(shape) != len(dims):
        raise ValueError(f"slot {where!r}: {topology} features are {dims}, got shape {shape}")
    seen = shape[dims.index("C")]
    if c is not None and c != seen:
        raise ValueError(f"slot {where!r}: declared {c} channels, but its features {shape} have {seen}")
    return topology, seen


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
