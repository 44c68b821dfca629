"""Vectorised morphogenetic environments on the real core: independence, determinism, telemetry."""

import dataclasses

import pyarrow as pa
import torch

from esper.leyline.actions import Op
from esper.leyline.stages import SeedStage
from esper.simic.collect import Learner, collect
from esper.simic.env import EnvConfig
from esper.simic.ppo import PPO, PPOConfig
from esper.simic.vec_env import VecMorphEnv
from esper.tamiyo.policy.actions import OPS
from esper.tamiyo.policy.network import ActResult, PolicyNetwork

TINY = EnvConfig(episode_length=3, synthetic_train=256, synthetic_val=128)


def run(num_envs: int, cfg: EnvConfig, steps: int = 4, policy_seed: int = 0):
    env = VecMorphEnv(num_envs, cfg)
    torch.manual_seed(policy_seed)
    net = PolicyNetwork(env.obs_dim, env.space)
    rollout, *_ = collect(env, net, steps, net.initial_state(num_envs), [0.0] * num_envs,
                          torch.Generator().manual_seed(policy_seed))
    return env, rollout


def test_same_seed_same_run_and_different_seed_different_run():
    _, a = run(2, TINY)
    _, b = run(2, TINY)
    _, c = run(2, dataclasses.replace(TINY, seed=5))
    assert torch.equal(a.obs, b.obs) and torch.equal(a.rewards, b.rewards)
    assert not torch.equal(a.obs, c.obs)
    assert not torch.equal(a.obs[:, 0], a.obs[:, 1])  # environments differ from each other


def test_environment_does_not_depend_on_its_neighbours():
    env1 = VecMorphEnv(1, TINY)
    env2 = VecMorphEnv(2, TINY)
    f1, _, _ = env1.observe()
    f2, _, _ = env2.observe()
    assert torch.equal(f1[0], f2[0])
    # the same germinate in env 0 of each, a prune-free WAIT in env 1
    germ = OPS.index(Op.GERMINATE)
    acts = {h: torch.zeros(2, dtype=torch.long) for h in env2.space.heads}
    acts["op"] = torch.tensor([germ, 0])
    acts["slot"] = torch.tensor([2, 0])
    res2 = ActResult(acts, torch.zeros(2, 7), torch.zeros(2), None, torch.full((2, 6), 1 / 6))
    res1 = ActResult({h: v[:1] for h, v in acts.items()}, torch.zeros(1, 7), torch.zeros(1), None,
                     torch.full((1, 6), 1 / 6))
    o1, o2 = env1.step(res1), env2.step(res2)
    assert torch.equal(o1.final_obs[0], o2.final_obs[0]) and o1.rewards[0] == o2.rewards[0]
    assert env2.envs[0].model.slots["block2"].stage is SeedStage.GERMINATED
    assert env2.envs[1].model.slots["block2"].stage is SeedStage.DORMANT
    assert o2.components[0]["action"] == -0.05 and o2.components[0]["shaping"] > 0


def test_episodes_truncate_and_reset():
    env, r = run(1, TINY, steps=7)
    # episode_length 3: steps 2 and 5 end episodes (truncated, bootstrapped), steps 3 and 6 restart
    assert r.truncated[:, 0].tolist() == [False, False, True, False, False, True, False]
    assert r.starts[:, 0].tolist() == [True, False, False, True, False, False, True]
    assert not r.terminated.any()
    assert env.envs[0].episode == 2
    boot = r.next_values[2, 0]
    assert boot != r.values[3, 0] or boot == 0  # next value at a cut is the bootstrap, not the next episode


def test_learner_round_logs_events_with_env_index(tmp_path):
    from esper.simic.telemetry import EnvEventSink, ppo_update_event
    from telemetry_schema import events as ev
    from telemetry_schema.rundir import create_run
    rw = create_run(tmp_path, ev.RunStarted(run_id="ppo-test", task="synthetic-images", topology="cnn",
                                            host_params=1, num_envs=2))
    env = VecMorphEnv(2, TINY, sink_factory=lambda i: EnvEventSink(rw.writer, i))
    net = PolicyNetwork(env.obs_dim, env.space)
    learner = Learner(env, PPO(net, PPOConfig(), total_updates=1), torch.Generator().manual_seed(0))
    result = learner.round(3)
    rw.writer.emit(ppo_update_event(result.stats))
    rw.close("completed")
    with pa.OSFile(str(next(tmp_path.glob("ppo-test/*.arrows"))), "rb") as f:
        table = pa.ipc.open_stream(f).read_all().to_pydict()
    kinds = table["kind"]
    envs = {e for k, e in zip(kinds, table["env"]) if k == "reward"}
    assert envs == {0, 1}
    assert kinds.count("reward") == 6 and kinds.count("controller_decision") == 6
    assert kinds.count("ppo_update") == 1
    assert {e for k, e in zip(kinds, table["env"]) if k == "epoch_completed"} == {0, 1}
    decisions = [d for d in table["controller_decision"] if d is not None]
    probs = dict(decisions[0]["action_probs"])
    assert decisions[0]["controller"] == "policy" and set(probs) == {op.name for op in OPS}
    assert abs(sum(probs.values()) - 1.0) < 1e-4 and decisions[0]["value"] is not None
    rewards = [r for r in table["reward"] if r is not None]
    comp = dict(rewards[0]["components"])
    assert "shaping" in comp and abs(sum(comp.values()) - rewards[0]["total"]) < 1e-6


def test_governor_rollback_terminates_with_death_penalty():
    env, r = run(1, dataclasses.replace(TINY, fault="nan@2"), steps=2)
    # every episode's first step trains epoch 2 with a NaN loss: rollback, the episode terminates
    assert r.terminated[:, 0].tolist() == [True, True] and not r.truncated.any()
    assert (r.rewards[:, 0] <= -10.0 + 1.0).all()
    assert r.starts[:, 0].tolist() == [True, True]  # a fresh episode follows at once
    assert env.envs[0].episode == 2
