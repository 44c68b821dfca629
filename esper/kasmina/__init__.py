"""Kasmina, the body: hosts, slots, blueprints, blending, alpha control, gradient isolation, gates."""

from esper.kasmina.alpha import CURVES, TEMPO_EPOCHS, AlphaController, AlphaMode
from esper.kasmina.blueprints import BLUEPRINTS, blueprint_names, blueprint_params, build_blueprint
from esper.kasmina import blueprints1d  # noqa: F401  (registers the conv1d and mlp blueprints)
from esper.kasmina.gates import NEXT_STAGE, GateContext, evaluate_gates, gate_g0
from esper.kasmina.gradients import (
    BiasCorrectedEMA, GradientCollector, GradientStats, gradient_health, gradient_ratio,
    tensor_grad_norms,
)
from esper.kasmina.hosts import CNNConfig, CNNHost, TransformerConfig, TransformerHost, cross_entropy
from esper.kasmina.hosts1d import Conv1dConfig, Conv1dHost, MLPConfig, MLPHost
from esper.kasmina.isolation import blend_add, blend_gate, blend_multiply, blend_with_isolation, ste_forward
from esper.kasmina.model import MorphogeneticModel
from esper.kasmina.protocol import HostProtocol, InjectionSpec
from esper.kasmina.slot import SeedRecord, SeedSlot

__all__ = [
    "CURVES", "TEMPO_EPOCHS", "AlphaController", "AlphaMode", "BLUEPRINTS", "blueprint_names",
    "blueprint_params", "build_blueprint", "NEXT_STAGE", "GateContext", "evaluate_gates", "gate_g0",
    "BiasCorrectedEMA", "GradientCollector", "GradientStats", "gradient_health", "gradient_ratio",
    "tensor_grad_norms", "CNNConfig", "CNNHost", "TransformerConfig", "TransformerHost", "cross_entropy",
    "Conv1dConfig", "Conv1dHost", "MLPConfig", "MLPHost",
    "blend_add", "blend_gate", "blend_multiply", "blend_with_isolation", "ste_forward",
    "MorphogeneticModel", "HostProtocol", "InjectionSpec", "SeedRecord", "SeedSlot",
]
