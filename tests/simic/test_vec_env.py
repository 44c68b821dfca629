"""Vectorised morphogenetic environments on the real core: shared batches, independence,
determinism, telemetry."""

import dataclasses

import pytest
import torch
from telemetry_schema import read_run

from esper.kasmina.model import MorphogeneticModel
from esper.leyline.actions import Op
from esper.leyline.stages import SeedStage
from esper.simic.collect import Learner, collect, new_policy
from esper.simic.env import EnvConfig
from esper.simic.ppo import PPO, PPOConfig
from esper.simic.rewards import RewardConfig
from esper.simic.vec_env import VecMorphEnv
from esper.tamiyo.policy.actions import ALPHA_SPEEDS, OPS, ActionSpace
from esper.tamiyo.policy.network import ActResult, NetworkConfig

TINY = EnvConfig(episode_length=3, synthetic_train=256, synthetic_val=128)


def run(num_envs: int, cfg: EnvConfig, steps: int = 4, policy_seed: int = 0):
    env = VecMorphEnv(num_envs, cfg)
    torch.manual_seed(policy_seed)
    net = new_policy(env, NetworkConfig(wait_bias=0.0))  # a policy that acts
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


def wait(n: int, heads) -> ActResult:
    acts = {h: torch.zeros(n, dtype=torch.long) for h in heads}
    return ActResult(acts, torch.zeros(n, len(heads)), torch.zeros(n), None, torch.full((n, 6), 1 / 6))


def record_training_inputs(env: VecMorphEnv) -> list[list[torch.Tensor]]:
    """Per environment, a copy of every input its model trains on (eval passes are skipped)."""
    seen: list[list[torch.Tensor]] = [[] for _ in env.envs]
    for i, e in enumerate(env.envs):
        e.model.register_forward_pre_hook(lambda m, args, i=i: seen[i].append(args[0].clone()) if m.training else None)
    return seen


def test_environments_train_on_the_same_batches_drawn_once_per_step():
    env = VecMorphEnv(3, dataclasses.replace(TINY, episode_length=4))
    seen = record_training_inputs(env)
    loader = env.data.task.train_loader
    assert loader.passes == 1  # the first epoch of every environment: one pass, not three
    for step in (1, 2):
        env.step(wait(3, env.space.heads))
        assert loader.passes == 1 + step
    n = len(loader)  # batches per epoch
    assert n > 1 and all(len(s) == 2 * n for s in seen)
    for other in seen[1:]:
        assert all(torch.equal(a, b) for a, b in zip(seen[0], other))  # same data, same order
    assert not torch.equal(seen[0][0], seen[0][n])  # and a new pass each step
    hosts = [dict(e.model.host.named_parameters()) for e in env.envs]
    assert torch.equal(hosts[0]["head.weight"], hosts[1]["head.weight"])  # one host seed per episode index
    own = VecMorphEnv(2, dataclasses.replace(TINY, shared_host=False))
    hosts = [dict(e.model.host.named_parameters()) for e in own.envs]
    assert not torch.equal(hosts[0]["head.weight"], hosts[1]["head.weight"])  # or an own init per environment
    assert len(env.pool.shadows) == 1 and len(own.pool.shadows) == 2  # one host-only shadow per host seed


def test_a_reset_trains_its_first_epoch_on_the_step_s_batches():
    env = VecMorphEnv(2, dataclasses.replace(TINY, episode_length=1), RewardConfig(mode="shaped"))  # no shadows
    loader = env.data.task.train_loader
    env.step(wait(2, env.space.heads))  # both episodes end and restart within the step
    seen: dict[int, list[torch.Tensor]] = {}  # id(model) -> inputs it trained on, the reset's new models too
    alive = []  # every model recorded, kept so that no id is reused by a model made after it is freed

    def record(m, args):
        if isinstance(m, MorphogeneticModel) and m.training:
            if id(m) not in seen:
                alive.append(m)
            seen.setdefault(id(m), []).append(args[0].clone())

    old = [id(e.model) for e in env.envs]
    handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        env.step(wait(2, env.space.heads))  # last epoch of episode 1, then episode 2's first epoch
    finally:
        handle.remove()
    new = [id(e.model) for e in env.envs]
    assert [e.episode for e in env.envs] == [2, 2] and set(seen) == set(old) | set(new)
    assert loader.passes == 3  # the resets drew nothing more
    runs = [seen[k] for k in old + new]
    assert all(len(r) == len(loader) for r in runs)
    assert all(torch.equal(a, b) for r in runs[1:] for a, b in zip(runs[0], r))


def test_environment_does_not_depend_on_its_neighbours():
    env1 = VecMorphEnv(1, TINY)
    env2 = VecMorphEnv(2, TINY)
    f1, _, _ = env1.observe()
    f2, _, _ = env2.observe()
    assert torch.equal(f1[0], f2[0])
    # the same germinate in env 0 of each, a WAIT in env 1
    acts = {h: torch.zeros(2, dtype=torch.long) for h in env2.space.heads}
    acts["op"] = torch.tensor([OPS.index(Op.GERMINATE), 0])
    acts["slot"] = torch.tensor([2, 0])
    acts["blueprint"] = torch.tensor([env2.space.blueprints.index("conv_light"), 0])
    n_heads = len(env2.space.heads)
    res2 = ActResult(acts, torch.zeros(2, n_heads), torch.zeros(2), None, torch.full((2, 6), 1 / 6))
    res1 = ActResult({h: v[:1] for h, v in acts.items()}, torch.zeros(1, n_heads), torch.zeros(1), None,
                     torch.full((1, 6), 1 / 6))
    o1, o2 = env1.step(res1), env2.step(res2)
    assert torch.equal(o1.final_obs[0], o2.final_obs[0]) and o1.rewards[0] == o2.rewards[0]
    # GERMINATE starts the incubation at once (the bridge adds the G1 ADVANCE)
    assert env2.envs[0].model.slots["block2"].stage is SeedStage.TRAINING
    assert env2.envs[1].model.slots["block2"].stage is SeedStage.DORMANT
    assert o2.components[0]["rent"] < 0 and o2.components[1]["rent"] == 0


def test_a_waiting_environment_earns_exactly_zero_paired_gain():
    """The shadow is the environment without its actions: same host weights, same batches, so an
    environment that only waits trains bit for bit like it and is credited with nothing."""
    env = VecMorphEnv(2, dataclasses.replace(TINY, episode_length=7))
    n_heads = len(env.space.heads)

    def act(op: Op) -> ActResult:  # env 0 waits; env 1 acts on slot block2
        acts = {h: torch.zeros(2, dtype=torch.long) for h in env.space.heads}
        acts["op"] = torch.tensor([0, OPS.index(op)])
        acts["slot"] = torch.tensor([0, 2])
        acts["blueprint"] = torch.tensor([0, env.space.blueprints.index("attention")])
        return ActResult(acts, torch.zeros(2, n_heads), torch.zeros(2), None, torch.full((2, 6), 1 / 6))

    gains, shadow, returns = [], next(iter(env.pool.shadows.values())), torch.zeros(2)
    for step in range(7):
        out = env.step(act(Op.GERMINATE if step == 0 else Op.ADVANCE))
        gains.append([c["paired_gain"] for c in out.components])
        returns += out.rewards
        if step < 6:
            assert env.envs[0].acc == shadow.acc
            # the critic's own features: the episode's reward so far and the recent gap to the shadow
            critic = env.observe()[0][:, -env.critic_dim:]
            gap1 = sum(env.envs[1].gaps[-3:]) / len(env.envs[1].gaps[-3:]) / 10
            assert critic[0].tolist() == [0.0, 0.0]
            assert critic[1].tolist() == pytest.approx([float(returns[1]), gap1], abs=1e-6)
    assert all(g[0] == 0.0 for g in gains)
    assert any(g[1] != 0.0 for g in gains)  # the seed, once blending, changed env 1's accuracy
    assert out.terminated.all() and not out.truncated.any()  # the training run is over


def test_episodes_end_and_reset():
    env, r = run(1, TINY, steps=7)
    # episode_length 3: steps 2 and 5 end the training run (terminated: nothing to bootstrap)
    assert r.terminated[:, 0].tolist() == [False, False, True, False, False, True, False]
    assert r.starts[:, 0].tolist() == [True, False, False, True, False, False, True]
    assert not r.truncated.any()
    assert env.envs[0].episode == 2


def test_learner_round_logs_events_with_env_index(tmp_path):
    from esper.simic.telemetry import EnvEventSink, ppo_update_event
    from telemetry_schema import events as ev
    from telemetry_schema.rundir import create_run
    rw = create_run(tmp_path, ev.RunStarted(run_id="ppo-test", task="synthetic-images", topology="cnn",
                                            host_params=1, num_envs=2))
    env = VecMorphEnv(2, TINY, sink_factory=lambda i: EnvEventSink(rw.writer, i))
    net = new_policy(env)
    learner = Learner(env, PPO(net, PPOConfig(), total_updates=1), torch.Generator().manual_seed(0))
    result = learner.round(3)
    rw.writer.emit(ppo_update_event(result.stats))
    rw.close("completed")
    log = read_run(tmp_path / "ppo-test")
    assert {r["env"] for r in log.rows("reward")} == {0, 1}
    assert len(log.rows("reward")) == 6 and len(log.rows("ppo_update")) == 1
    assert len([d for d in log.rows("controller_decision") if d["reason"] == "policy"]) == 6
    assert {e["env"] for e in log.rows("epoch_completed")} == {0, 1}  # the shadows log nothing
    decisions = log.rows("controller_decision")
    probs = dict(decisions[0]["action_probs"])
    assert decisions[0]["controller"] == "policy" and set(probs) == {op.name for op in OPS}
    assert abs(sum(probs.values()) - 1.0) < 1e-4 and decisions[0]["value"] is not None
    reward = log.rows("reward")[0]
    comp = dict(reward["components"])
    assert "paired_gain" in comp and abs(sum(comp.values()) - reward["total"]) < 1e-6


def test_governor_rollback_terminates_with_death_penalty():
    env, r = run(1, dataclasses.replace(TINY, fault="nan@2"), steps=2)
    # every episode's first step trains epoch 2 with a NaN loss: rollback, the episode terminates
    assert r.terminated[:, 0].tolist() == [True, True] and not r.truncated.any()
    assert (r.rewards[:, 0] <= -10.0 + 1.0).all()
    assert r.starts[:, 0].tolist() == [True, True]  # a fresh episode follows at once
    assert env.envs[0].episode == 2


def test_controller_decision_event_carries_alpha_target_and_speed(tmp_path):
    from esper.simic.telemetry import EnvEventSink
    from telemetry_schema import events as ev
    from telemetry_schema.rundir import create_run
    rw = create_run(tmp_path, ev.RunStarted(run_id="speed", task="synthetic-images", topology="cnn", host_params=1))
    sink = EnvEventSink(rw.writer, 3)
    space = ActionSpace(("block2",), ("noop", "conv_light"))
    act = {h: 0 for h in space.heads} | {"op": OPS.index(Op.SET_ALPHA_TARGET), "alpha_target": 1,
                                          "alpha_speed": ALPHA_SPEEDS.index(5)}
    sink.annotate({op.name: 1 / 6 for op in OPS}, 0.25)
    sink.controller_decision("policy", space.decode(act))
    germ = act | {"op": OPS.index(Op.GERMINATE), "blueprint": 1, "blend": 2, "tempo": 2, "curve": 1}
    sink.controller_decision("policy", space.decode(germ))
    rw.close("completed")
    first, second = read_run(tmp_path / "speed").rows("controller_decision")
    assert first["op"] == "SET_ALPHA_TARGET" and first["reason"] == "alpha_target=0.7 alpha_speed_epochs=5"
    assert (first["alpha_target"], first["alpha_steps"]) == (0.7, 5)
    assert set(dict(first["action_probs"])) == {op.name for op in OPS}  # the op probabilities stay as they were
    assert (second["blueprint"], second["blend"], second["tempo"], second["curve"]) == ("conv_light", "gate", "slow",
                                                                                         "cosine")


def test_worker_processes_step_exactly_as_one_process(tmp_path):
    from esper.simic.procs import ProcVecEnv
    from esper.tamiyo.policy.bridge import BridgeConfig
    from esper.tamiyo.policy.features import FeatureConfig
    from telemetry_schema import events as ev
    from telemetry_schema.rundir import create_run
    cfg = dataclasses.replace(TINY, episode_length=3)
    one = VecMorphEnv(3, cfg, teacher="heuristic")
    rw = create_run(tmp_path, ev.RunStarted(run_id="procs", task="synthetic-images", topology="cnn", host_params=1))
    split = ProcVecEnv(3, 2, cfg, RewardConfig(), FeatureConfig(), BridgeConfig(), rw.writer, teacher="heuristic")
    try:
        rollouts = []
        for env in (one, split):
            torch.manual_seed(0)
            net = new_policy(env)
            r, *_ = collect(env, net, 5, net.initial_state(3), [0.0] * 3, torch.Generator().manual_seed(0),
                            teacher=True)
            rollouts.append(r)
        a, b = rollouts
        assert torch.equal(a.obs, b.obs) and torch.equal(a.rewards, b.rewards)
        assert all(torch.equal(a.actions[h], b.actions[h]) for h in a.actions)
        assert all(torch.equal(a.teacher_actions[h], b.teacher_actions[h]) for h in a.teacher_actions)
        assert (a.teacher_actions["op"] == OPS.index(Op.GERMINATE)).any()  # the heuristic grows here
        assert torch.equal(a.terminated, b.terminated) and split.next_episode() == one.next_episode()
    finally:
        split.close()
    rw.close("completed")
    log = read_run(tmp_path / "procs")
    assert {r["env"] for r in log.rows("reward")} == {0, 1, 2} and len(log.rows("reward")) == 15
