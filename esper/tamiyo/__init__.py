"""Tamiyo, the controller: decides when seeds germinate, advance, fossilize or are pruned."""

from esper.tamiyo.heuristic import HeuristicController, acc_plateaued, host_stable
from esper.tamiyo.protocol import Controller, NoController

__all__ = ["Controller", "HeuristicController", "NoController", "acc_plateaued", "host_stable"]
