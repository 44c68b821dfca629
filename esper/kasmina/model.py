"""MorphogeneticModel: a host with SeedSlots at (some of) its injection points."""

from __future__ import annotations

from torch import Tensor, nn

from esper.kasmina.protocol import HostProtocol
from esper.kasmina.slot import SeedSlot
from esper.leyline.config import GradientConfig, SlotConfig
from esper.leyline.stages import SeedStage
from esper.nissa.sink import Sink


class MorphogeneticModel(nn.Module):
    """Runs the host segment by segment, passing features through each enabled slot."""

    def __init__(self, host: HostProtocol, slot_ids: list[str] | None = None,
                 slot_cfg: SlotConfig = SlotConfig(), grad_cfg: GradientConfig = GradientConfig()) -> None:
        super().__init__()
        self.host = host
        specs = host.injection_specs()
        known = [s.slot_id for s in specs]
        wanted = known if slot_ids is None else slot_ids
        unknown = [s for s in wanted if s not in known]
        if unknown:
            raise ValueError(f"unknown slot(s) {unknown}; this host has {known}")
        self.slots = nn.ModuleDict({s.slot_id: SeedSlot(s, host.topology, slot_cfg, grad_cfg)
                                    for s in specs if s.slot_id in wanted})
        self.order = [s for s in known if s in self.slots]

    @property
    def topology(self) -> str:
        return self.host.topology

    def set_sink(self, sink: Sink) -> None:
        for slot in self.slots.values():
            slot.sink = sink

    def forward(self, x: Tensor) -> Tensor:
        if not self.order:
            return self.host(x)
        h, prev = x, None
        for slot_id in self.order:
            h = self.slots[slot_id](self.host.forward_to_segment(slot_id, h, prev))
            prev = slot_id
        return self.host.forward_from_segment(prev, h)

    def host_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.host.parameters() if p.requires_grad]

    def host_param_count(self) -> int:
        return sum(p.numel() for p in self.host_parameters())

    def total_param_count(self) -> int:
        return self.host_param_count() + sum(
            sum(p.numel() for p in s.seed_parameters()) for s in self.slots.values())

    def live_slots(self) -> list[SeedSlot]:
        return [s for s in self.slots.values() if s.is_live]

    def slots_in(self, *stages: SeedStage) -> list[SeedSlot]:
        return [s for s in self.slots.values() if s.stage in stages]
