"""Deploy parity (issue 14): one policy, driven through the PPO environment and through ``esper
train --controller policy:PATH``, makes the same decisions with the same settings and trains the
same model."""

import torch

from esper.leyline.config import TrainConfig
from esper.runtime.synthetic import SyntheticConfig
from esper.runtime.tasks import TaskOptions
from esper.session import RunSpec, run_training
from esper.simic.collect import new_policy
from esper.simic.env import EnvConfig
from esper.simic.telemetry import EnvEventSink
from esper.simic.vec_env import VecMorphEnv
from esper.tamiyo.policy.actions import ALPHA_SPEEDS, ALPHA_TARGETS, BLENDS, CURVES, OPS, TEMPOS
from esper.tamiyo.policy.network import PolicyNetwork
from esper.leyline.actions import Op
from telemetry_schema import events as ev
from telemetry_schema import read_run
from telemetry_schema.rundir import create_run

CFG = EnvConfig(episode_length=11, synthetic_train=256, synthetic_val=128, seed=0)


def steered_policy(env: VecMorphEnv) -> PolicyNetwork:
    """A random policy whose head biases make its greedy choices exercise every setting: germinate
    every slot (gate blend, cosine curve), then (the bridge advancing the seeds) retarget alpha
    (0.7 over 5 epochs)."""
    torch.manual_seed(3)
    net = new_policy(env)
    prefs = {"op": {Op.WAIT: -5, Op.GERMINATE: 6, Op.SET_ALPHA_TARGET: 5, Op.PRUNE: -5, Op.FOSSILIZE: 3,
                    Op.ADVANCE: 4},
             "blend": {"gate": 5}, "tempo": {"fast": 5}, "curve": {"cosine": 5},
             "alpha_target": {0.7: 5}, "alpha_speed": {5: 5}, "slot": {"block2": 5, "block1": 3},
             "blueprint": {"attention": 5, "depthwise": 3}}
    names = {"op": OPS, "blend": BLENDS, "tempo": TEMPOS, "curve": CURVES, "alpha_target": ALPHA_TARGETS,
             "alpha_speed": ALPHA_SPEEDS, "slot": env.space.slot_ids, "blueprint": env.space.blueprints}
    with torch.no_grad():
        for head, pref in prefs.items():
            bias = net.heads[head][-1].bias
            bias.zero_()
            for choice, value in pref.items():
                bias[list(names[head]).index(choice)] = float(value)
    return net


def env_run(tmp_path, net_path) -> tuple:
    rw = create_run(tmp_path, ev.RunStarted(run_id="env", task="synthetic-images", topology="cnn", host_params=1))
    env = VecMorphEnv(1, CFG, sink_factory=lambda i: EnvEventSink(rw.writer, i))
    net = steered_policy(env)
    net.save(net_path, dict(env.bridge.config(), task=CFG.task))
    state = net.initial_state(1)
    critic_seen = []
    for _ in range(CFG.episode_length):  # one whole episode, greedy as deployment acts
        feats, masks, starts = env.observe()
        critic_seen.append(feats[0, -env.critic_dim:].tolist())  # given to the critic here, zeros deployed
        res = net.act(feats, masks, state, starts, greedy=True)
        state = res.state
        out = env.step(res)
    assert out.terminated.all() and env.critic_dim == 2 and any(x != 0.0 for f in critic_seen for x in f)
    rw.close("completed")
    return read_run(tmp_path / "env")


def deployed_run(tmp_path, net_path):
    spec = RunSpec(task=CFG.task, controller=f"policy:{net_path}", runs_dir=str(tmp_path), run_name="deployed",
                   train=TrainConfig(epochs=CFG.episode_length + 1, seed=CFG.seed), save_model=False,
                   task_options=TaskOptions(synthetic=SyntheticConfig(train_size=CFG.synthetic_train,
                                                                      val_size=CFG.synthetic_val)))
    outcome = run_training(spec)
    return read_run(outcome.run_dir)


def decisions(log, last_epoch: int) -> list[tuple]:
    keys = ("epoch", "op", "slot", "seed", "blueprint", "blend", "tempo", "curve", "alpha_target", "alpha_steps",
            "reason")
    return [tuple(r[k] for k in keys) for r in log.rows("controller_decision") if r["epoch"] <= last_epoch]


def test_one_policy_decides_and_trains_the_same_in_the_environment_and_deployed(tmp_path):
    net_path = tmp_path / "policy.pt"
    trained = env_run(tmp_path, net_path)
    deployed = deployed_run(tmp_path, net_path)
    last = CFG.episode_length  # the environment's episode ends after the decision of this epoch
    env_stream, deployed_stream = decisions(trained, last), decisions(deployed, last)
    assert env_stream == deployed_stream
    ops = [d[1] for d in env_stream]
    assert {"GERMINATE", "ADVANCE", "SET_ALPHA_TARGET"} <= set(ops)
    germinated = [(r["epoch"], r["slot"], r["blueprint"], r["blend"], r["tempo"])
                  for r in deployed.rows("seed_germinated") if r["epoch"] <= last]
    assert germinated == [(r["epoch"], r["slot"], r["blueprint"], r["blend"], r["tempo"])
                          for r in trained.rows("seed_germinated") if r["epoch"] <= last]
    assert germinated and all(blend == "gate" for *_, blend, _ in germinated)  # the policy's, not the slot's 'add'
    retarget = [d for d in env_stream if d[1] == "SET_ALPHA_TARGET"]
    assert all((d[8], d[9]) == (0.7, 5) for d in retarget)
    alphas = [(r["epoch"], r["slot"], r["value"], r["target"], r["curve"]) for r in trained.rows("alpha")
              if r["epoch"] <= last]
    assert alphas and alphas == [(r["epoch"], r["slot"], r["value"], r["target"], r["curve"])
                                 for r in deployed.rows("alpha") if r["epoch"] <= last]
    assert any(curve == "cosine" for *_, curve in alphas)
    # the same model, bit for bit: every epoch's accuracy (the environment's log goes on with the
    # first epoch of its next episode)
    env_acc = [r["val_acc"] for r in trained.rows("epoch_completed")][:last + 1]
    assert env_acc == [r["val_acc"] for r in deployed.rows("epoch_completed")][:last + 1]
    grads = [(r["epoch"], r["slot"], r["seed_norm"]) for r in trained.rows("gradient_stats") if r["epoch"] <= last]
    assert grads and grads == [(r["epoch"], r["slot"], r["seed_norm"]) for r in deployed.rows("gradient_stats")
                               if r["epoch"] <= last]
