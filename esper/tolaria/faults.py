"""Deliberate faults for governor demos, and the check that a fault can fire at all."""

from __future__ import annotations

from dataclasses import dataclass

from esper.leyline.config import GovernorConfig


@dataclass(frozen=True)
class FaultSpec:
    """A deliberate fault: 'nan' poisons the first training loss of ``epoch`` (weights go NaN);
    'spike' multiplies the validation loss by ``factor`` for ``span`` epochs from ``epoch``."""

    kind: str
    # 'nan' or 'spike'
    epoch: int
    # first epoch affected (1-based)
    factor: float = 100.0
    # spike multiplier
    span: int = 3
    # epochs a spike lasts (3 consecutive anomalies force a rollback)

    @classmethod
    def parse(cls, text: str) -> "FaultSpec":
        """'nan@5' or 'spike@12'; raises ValueError otherwise."""
        kind, _, at = text.partition("@")
        if kind not in ("nan", "spike") or not at.isdigit() or int(at) < 1:
            raise ValueError(f"bad --inject-fault {text!r}: expected nan@EPOCH or spike@EPOCH")
        return cls(kind, int(at))

    def __str__(self) -> str:
        return f"{self.kind}@{self.epoch}"

    def check(self, epochs: int, governor: GovernorConfig) -> list[str]:
        """Raise ValueError for a fault that cannot make the governor panic in a run of ``epochs``
        epochs; return warnings (one line each) for one that panics but cannot force a rollback."""
        if self.epoch > epochs:
            raise ValueError(f"--inject-fault {self}: the run has only {epochs} epochs")
        if self.kind != "spike":
            return []
        need = governor.min_history + 1  # the statistical check needs min_history good losses before
        if self.epoch < need:
            raise ValueError(f"--inject-fault {self} cannot make the governor panic: its statistical check "
                             f"needs {governor.min_history} epochs of loss history first (use spike@{need} "
                             f"or later)")
        spiked = min(self.span, epochs - self.epoch + 1)
        if spiked < governor.consecutive_to_rollback:
            return [f"--inject-fault {self}: {spiked} spiked epoch(s) before the run ends (or the spike "
                    f"ends); the governor will panic but not roll back, which takes "
                    f"{governor.consecutive_to_rollback} anomalies in a row"]
        return []
