"""What the ranks of a distributed run agree on at the end of each epoch, and how.

Agreed (decided on rank 0 only, broadcast as JSON in ONE ``distributed.agree`` per epoch, at
the end of the epoch; see ``Trainer._close_epoch``):

1. **The governor's verdict** on the epoch's validation loss: healthy, panic, or panic with
   rollback. Only rank 0 calls ``Governor.assess``; every rank applies the agreed verdict
   (``Governor.record``, the panic counters, the rollback to its own CPU snapshot, which equals
   rank 0's because the weights do). The loss it judges is already the mean over ranks
   (``mean_scalar``), so a NaN or Inf on one rank alone reaches rank 0's governor, and every
   rank rolls back together.
2. **The controller's decisions**, in order, as logged (seed ids filled in). Only rank 0 calls
   ``Controller.decide``.
3. **Every gate result** (G0-G5: gate, checks passed, checks failed) those decisions produced,
   in evaluation order. Rank 0 evaluates the gates (``GateRecorder``); the other ranks apply the
   same decisions through ``Lifecycle.apply`` with ``GateReplay`` handing back rank 0's results
   instead of evaluating, so their ``gate_evaluated`` events are rank 0's verbatim and every
   stage move (germinate, advance, fossilize, prune) follows from rank 0's outcome, even when a
   gate input (a gradient ratio, a contribution) differs on another rank.
4. **A fingerprint of the architecture** afterwards (each slot's stage, seed and pending prune,
   the parameter count): each other rank compares its own after applying the outcome and raises
   ``RankDivergence`` on a mismatch (the others then fail with ``RankFailure``).

Rank 0 is the decider, so it applies as it decides and broadcasts afterwards: the gates of a
decision may read what an earlier decision of the same epoch did (the heuristic's GERMINATE is
followed by an ADVANCE whose G1 probes the seed just built). The other ranks wait in ``agree``
and change nothing until the outcome arrives. What a rank does between two agreements (alpha
ramps, embargo countdowns and scheduled prunes in ``SeedSlot.end_epoch``, seed optimizers) is a
deterministic function of agreed state. Not decisions, and reduced rather than agreed: gradients
(DDP's all-reduce), BatchNorm statistics (``average_buffers``), train and validation loss and
accuracy (means). Counterfactual contributions and gradient statistics are measured on every rank
(for its telemetry) but only rank 0's reach a decision. A single-process run makes the same calls
(``GateRecorder``, ``assess`` then ``record``) and no distributed call at all.

Seeds germinated mid-run and DDP: each rank builds the new seed module itself when it applies the
agreed GERMINATE (from its own RNG, so the weights may differ). ``Trainer._train_module`` keys its
DistributedDataParallel wrapper on the architecture (each slot's stage, seed id and trainable
parameter count); the key is a function of agreed state, so every rank sees it change after the
same epoch (germination, advance, prune, fossilization, rollback) and builds a new wrapper at the
start of the next training pass, before any forward. DDP's constructor checks that parameter
shapes match across ranks and broadcasts rank 0's parameters and buffers in place
(``torch.distributed.utils._sync_module_states``), so the new seed starts as rank 0's everywhere,
and the seed optimizer, created over the same tensor objects, steps the synced values. Until then
only the G1 shape probe has read the seed, and it reads shapes. ``find_unused_parameters=True``
while any slot holds a seed: a GERMINATED seed (or a branch outside the loss) takes no gradient.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from esper.kasmina.model import MorphogeneticModel
from esper.leyline.actions import Decision
from esper.leyline.gates import GateId, GateResult
from esper.leyline.stages import SeedStage
from esper.tolaria.governor import GovernorVerdict


class RankDivergence(RuntimeError):
    """This rank cannot apply rank 0's outcome: its lifecycle state differs from rank 0's."""


# -- JSON codecs (agree() carries JSON, never pickle) -------------------------------------------

def _enum_type(annotation: Any) -> type[Enum] | None:
    """The Enum class in ``annotation`` (``Op``, ``Op | None``), or None."""
    for t in (annotation, *typing.get_args(annotation)):
        if isinstance(t, type) and issubclass(t, Enum):
            return t
    return None


def decision_to_json(d: Decision) -> dict:
    return {f.name: (v.name if isinstance(v, Enum) else v)
            for f in dataclasses.fields(d) for v in [getattr(d, f.name)]}


def decision_from_json(data: dict) -> Decision:
    hints = typing.get_type_hints(Decision)
    values = {}
    for name, v in data.items():
        enum = _enum_type(hints[name])
        values[name] = enum[v] if enum is not None and v is not None else v
    return Decision(**values)


def gate_result_to_json(r: GateResult) -> dict:
    return {"gate": r.gate.value, "target": r.target.name, "passed": list(r.checks_passed),
            "failed": list(r.checks_failed)}


def gate_result_from_json(data: dict) -> GateResult:
    return GateResult(GateId(data["gate"]), SeedStage[data["target"]], tuple(data["passed"]),
                      tuple(data["failed"]))


def architecture_fingerprint(model: MorphogeneticModel) -> str:
    """Each slot's stage, seed id and pending prune, and the parameter count, in one string."""
    slots = [f"{sid}:{s.stage.name}:{s.seed_id or '-'}{'~' if s.pending_prune else ''}"
             for sid, s in model.slots.items()]
    return "|".join([*slots, f"params={model.total_param_count()}"])


@dataclass(frozen=True)
class EpochOutcome:
    """Rank 0's lifecycle outcome of one epoch: what every other rank applies."""

    verdict: GovernorVerdict | None
    # the governor's verdict on the epoch's validation loss (None: healthy)
    decisions: tuple[Decision, ...]
    # the controller's decisions as applied and logged, in order
    gates: tuple[GateResult, ...]
    # every gate result those decisions produced, in evaluation order
    fingerprint: str
    # architecture_fingerprint of the model after the decisions

    def to_json(self) -> dict:
        return {"verdict": dataclasses.asdict(self.verdict) if self.verdict else None,
                "decisions": [decision_to_json(d) for d in self.decisions],
                "gates": [gate_result_to_json(r) for r in self.gates], "fingerprint": self.fingerprint}

    @classmethod
    def from_json(cls, data: dict) -> EpochOutcome:
        verdict = GovernorVerdict(**data["verdict"]) if data["verdict"] is not None else None
        return cls(verdict, tuple(decision_from_json(d) for d in data["decisions"]),
                   tuple(gate_result_from_json(r) for r in data["gates"]), data["fingerprint"])


# -- where gate results come from (Lifecycle.apply's gate_source) --------------------------------

class GateRecorder:
    """Evaluates the gates and keeps every result (rank 0, and single-process runs)."""

    def __init__(self) -> None:
        self.results: list[GateResult] = []

    def __call__(self, ids: tuple[GateId, ...], evaluate: Callable[[], list[GateResult]]) -> list[GateResult]:
        out = evaluate()
        self.results.extend(out)
        return out

    def finish(self) -> None:
        """Nothing to check: every result was evaluated here."""


class GateReplay:
    """Hands back rank 0's gate results in order instead of evaluating the gates here."""

    def __init__(self, results: Sequence[GateResult]) -> None:
        self.results = list(results)
        self.used = 0

    def __call__(self, ids: tuple[GateId, ...], evaluate: Callable[[], list[GateResult]]) -> list[GateResult]:
        out = self.results[self.used:self.used + len(ids)]
        if tuple(r.gate for r in out) != tuple(ids):
            got = [r.gate.value for r in out]
            raise RankDivergence(f"expected gates {[g.value for g in ids]} where rank 0 evaluated {got}")
        self.used += len(ids)
        return out

    def finish(self) -> None:
        """Raise unless every result of rank 0 was used (this rank skipped a gated move)."""
        if self.used != len(self.results):
            left = [r.gate.value for r in self.results[self.used:]]
            raise RankDivergence(f"rank 0 evaluated gates {left} that this rank never reached")
