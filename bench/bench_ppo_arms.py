"""What fixed growth choices earn in the PPO environment: the ceiling a learned policy's
germination choices can reach there.

    python bench/bench_ppo_arms.py                                   # 5 arms, 4 seeds
    python bench/bench_ppo_arms.py --arms attention@block2,conv_light@block0 --seeds 6

Each arm germinates one blueprint into one slot at the first decision (blend add, tempo fast,
curve linear: the slot's defaults), advances it whenever its gates allow and keeps it (HOLDING);
it runs on ``esper ppo``'s environment (``EnvConfig`` defaults: 17 epochs of 1,024 fresh images,
validation 512) beside the host alone from the same initial weights on the same batches (the
environment's own host-only shadow). Printed: each arm's gap to the host alone, read as the
paired reward reads it (the mean of the last 3 epochs' accuracy gaps), mean ± SE over seeds.
Figures only, never pass/fail; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from esper.leyline.actions import Decision, Op
from esper.leyline.stages import SeedStage
from esper.simic.env import EnvConfig, MorphEnv, task_options
from esper.simic.rewards import RewardConfig
from esper.simic.shared_data import SharedData

S = SeedStage
DEFAULT_ARMS = "norm@block2,attention@block2,attention@block1,norm@block0,depthwise@block0"


def arm_decisions(env: MorphEnv, blueprint: str, slot_id: str, first: bool) -> list[Decision]:
    slot = env.model.slots[slot_id]
    if first:
        return [Decision(Op.GERMINATE, slot_id, blueprint, blend="add", tempo="fast", curve="linear"),
                Decision(Op.ADVANCE, slot_id)]
    if slot.stage in (S.TRAINING, S.BLENDING):
        return [Decision(Op.ADVANCE, slot_id)]
    return [Decision(Op.WAIT)]


def run_arm(cfg: EnvConfig, arm: tuple[str, str] | None) -> list[float]:
    """Per-epoch validation accuracy of one episode (the host alone when ``arm`` is None)."""
    data = SharedData.build(cfg.task, task_options(cfg))
    env = MorphEnv(0, cfg, RewardConfig(), data, data.draw(), host_seed=cfg.seed)
    accs, done = [env.result.val_acc], False
    while not done:
        decisions = arm_decisions(env, *arm, first=len(accs) == 1) if arm else [Decision(Op.WAIT)]
        done = env.step(decisions, data.draw()).terminated
        accs.append(env.result.val_acc)
    return accs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arms", default=DEFAULT_ARMS, help="BLUEPRINT@SLOT,...")
    p.add_argument("--seeds", type=int, default=4)
    a = p.parse_args()
    torch.set_num_threads(1)
    arms = [tuple(x.split("@")) for x in a.arms.split(",") if x]
    t0 = time.perf_counter()
    gaps: dict[str, list[float]] = {f"{b}@{s}": [] for b, s in arms}
    for seed in range(a.seeds):
        cfg = EnvConfig(seed=seed)
        base = run_arm(cfg, None)
        for b, s in arms:
            accs = run_arm(cfg, (b, s))
            gap = statistics.fmean(accs[-3:]) - statistics.fmean(base[-3:])
            gaps[f"{b}@{s}"].append(gap)
            print(f"seed {seed} {b}@{s}: last-3 accuracy {statistics.fmean(accs[-3:]):6.2f} vs host alone "
                  f"{statistics.fmean(base[-3:]):6.2f} ({gap:+.2f} pp)", flush=True)
    summary = {}
    for name, g in gaps.items():
        mean = statistics.fmean(g)
        se = statistics.stdev(g) / len(g) ** 0.5 if len(g) > 1 else float("nan")
        summary[name] = {"mean_pp": mean, "se_pp": se, "gaps_pp": g}
        print(f"{name:20s} {mean:+.2f} ± {se:.2f} pp over {len(g)} seeds")
    print(json.dumps({"bench": "ppo_arms", "seeds": a.seeds, "seconds": time.perf_counter() - t0,
                      "env": EnvConfig().__dict__, "arms": summary}, default=str))


if __name__ == "__main__":
    main()
