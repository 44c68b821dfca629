"""The learned controller: factored action space, masks, observation features, network.

    actions.py       heads (op, slot, blueprint, blend, tempo, alpha_target, alpha_speed, curve), decoding
    masks.py         legal (op, slot) pairs from slot stages; masked logits -1e4
    distribution.py  op-first sampling; only the op's heads enter log-prob and entropy
    features.py      Observation -> run-level + per-slot feature vector
    normalizer.py    running mean/std of features (module buffers)
    network.py       Linear + LayerNorm -> LSTM -> head MLPs + value; weights_only checkpoints
    bridge.py        Observation -> features and masks, action -> Decisions (training and deployment alike)
    controller.py    PolicyController (the Controller protocol) and load_policy_controller
"""

from esper.tamiyo.policy.actions import ActionSpace
from esper.tamiyo.policy.controller import PolicyController, load_policy_controller
from esper.tamiyo.policy.network import NetworkConfig, PolicyNetwork

__all__ = ["ActionSpace", "NetworkConfig", "PolicyController", "PolicyNetwork", "load_policy_controller"]
