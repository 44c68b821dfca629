"""PPO environment throughput: lockstep environment steps per second for K = 1, 2, 4 on CPU.

    python bench/bench_ppo.py                                    # K = 1, 2, 4; 8 steps each
    python bench/bench_ppo.py --ks 1,2 --steps 4 --train-size 512   # quicker

Each RL step of each environment trains the host one epoch (plus validation and the
counterfactual passes of blending seeds). Per K this reports environment steps per second
and where the time goes: the batched policy call (act + bootstrap value), host training
(the environments' step), and the PPO update that ends the round. The peer measured in the
same run is the host alone: fresh environments with the same seeds replay the very actions the
policy took (same seeds, same actions -> the same host work), with no policy and no update, so
the ratio of the two rates is the whole learned-controller overhead.

Prints figures, never pass/fail. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from esper.simic.collect import new_policy
from esper.simic.env import EnvConfig
from esper.simic.ppo import PPO, PPOConfig
from esper.simic.rollout import RolloutBuffer
from esper.simic.vec_env import VecMorphEnv


def measure(k: int, steps: int, cfg: EnvConfig, clock=time.perf_counter) -> dict:
    env = VecMorphEnv(k, cfg)
    torch.manual_seed(0)
    net = new_policy(env)
    ppo = PPO(net, PPOConfig(), total_updates=1)
    gen = torch.Generator().manual_seed(0)
    state = net.initial_state(k)
    buf = RolloutBuffer(state)
    t_policy = t_env = 0.0
    taken = []
    no_start = torch.zeros(1, k, dtype=torch.bool)
    for _ in range(steps):
        t0 = clock()
        feats, masks, starts = env.observe()
        res = net.act(feats, masks, state, starts, gen)
        t1 = clock()
        out = env.step(res)
        t2 = clock()
        taken.append(res)
        with torch.no_grad():
            _, boot, _ = net(out.final_obs.unsqueeze(0), res.state, no_start)
        buf.add(feats, starts, res.actions, masks, res.head_logp, res.value)
        buf.add_outcome(out.rewards, out.terminated, out.truncated, boot[0])
        state = res.state
        t3 = clock()
        t_policy += (t1 - t0) + (t3 - t2)
        t_env += t2 - t1
    feats, _, starts = env.observe()
    with torch.no_grad():
        _, final_v, _ = net(feats.unsqueeze(0), state, starts.unsqueeze(0))
    t0 = clock()
    ppo.update(buf.finish(final_v[0]))
    t_update = clock() - t0
    # peer: the same environments replaying the same actions, no policy at all
    peer = VecMorphEnv(k, cfg)
    t0 = clock()
    for res in taken:
        peer.step(res)
    t_peer = clock() - t0
    total = t_policy + t_env + t_update
    return {"k": k, "env_steps": k * steps, "env_steps_per_s": k * steps / total,
            "host_only_steps_per_s": k * steps / t_peer, "policy_s": t_policy, "env_s": t_env,
            "update_s": t_update, "policy_share": t_policy / total, "update_share": t_update / total,
            "env_share": t_env / total}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ks", default="1,2,4")
    p.add_argument("--steps", type=int, default=8, help="lockstep steps per K")
    p.add_argument("--episode-length", type=int, default=6)
    p.add_argument("--train-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = EnvConfig(episode_length=a.episode_length, synthetic_train=a.train_size)
    rows = []
    for k in (int(x) for x in a.ks.split(",")):
        r = measure(k, a.steps, cfg)
        rows.append(r)
        print(f"K={k}: {r['env_steps_per_s']:.2f} env steps/s (host alone {r['host_only_steps_per_s']:.2f}; "
              f"ratio {r['env_steps_per_s'] / r['host_only_steps_per_s']:.2f}) | policy {100 * r['policy_share']:.1f}% "
              f"host training {100 * r['env_share']:.1f}% PPO update {100 * r['update_share']:.1f}%")
    print(json.dumps({"bench": "ppo", "threads": a.threads, "train_size": a.train_size, "steps": a.steps,
                      "results": rows}))


if __name__ == "__main__":
    main()
