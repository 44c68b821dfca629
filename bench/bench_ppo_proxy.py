"""Is the PPO proxy task one where growth pays? The heuristic against the host alone on
candidate proxy tasks (``esper ppo``'s episodes: epochs and training samples), paired seeds.

    python bench/bench_ppo_proxy.py                          # the environments' default proxy
    python bench/bench_ppo_proxy.py 17x1024 24x2048 17x4096  # candidates: EPOCHSxTRAIN[/WIDTH]

A policy can only learn to grow where growing pays: on a proxy where the heuristic earns
nothing over the host alone, waiting is near-optimal under a paired reward. Each candidate runs
both arms through ``esper train``'s own path (``session.run_training``) on the same seeds (none
of ``bench_ppo_learning``'s held-out seeds), and prints the paired difference of final
validation accuracy (mean ± SE), the FLOPs ratio and the seconds a run takes, the cost of one
environment's episode. Figures only, never pass/fail; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ppo_learning import arm_spec, mean_se, run_arm, write_report  # noqa: E402  (a sibling script)

from esper.simic.config import EnvConfig  # noqa: E402

SEEDS = (2001, 2002, 2003, 2004)
"""Not the seeds of bench_ppo_learning's held-out evaluation (1001-1010)."""


def parse(candidate: str) -> tuple[int, int, int | None]:
    """'EPOCHSxTRAIN' or 'EPOCHSxTRAIN/WIDTH' -> (epochs, train samples, host width or None)."""
    try:
        size, _, width = candidate.partition("/")
        epochs, train = (int(x) for x in size.split("x"))
        return epochs, train, int(width) if width else None
    except ValueError:
        raise SystemExit(f"bad candidate {candidate!r}: use EPOCHSxTRAIN or EPOCHSxTRAIN/WIDTH, e.g. 24x2048") from None


def timed_arm(controller: str, seed: int, epochs: int, train: int, val: int, width: int | None, runs: str) -> dict:
    """``bench_ppo_learning.run_arm`` of one arm, with the seconds it took."""
    t0 = time.perf_counter()
    out = run_arm(arm_spec(controller, seed, epochs, train, val, Path(runs), host_width=width,
                           label=f"{controller}-{epochs}x{train}-{width}"))
    return {**out, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> None:
    env = EnvConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("candidates", nargs="*", default=[f"{env.episode_length + 1}x{env.synthetic_train}"],
                   help="EPOCHSxTRAIN[/WIDTH] (default: the environments' proxy, "
                        f"{env.episode_length + 1}x{env.synthetic_train})")
    p.add_argument("--seeds", type=int, default=len(SEEDS), help=f"paired seeds (at most {len(SEEDS)})")
    p.add_argument("--val-size", type=int, default=env.synthetic_val)
    p.add_argument("--out", default=None, help="also write the JSON object here")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    seeds = SEEDS[:max(1, min(a.seeds, len(SEEDS)))]
    results = []
    with tempfile.TemporaryDirectory() as runs:
        for candidate in a.candidates:
            epochs, train, width = parse(candidate)
            arms = {c: [timed_arm(c, s, epochs, train, a.val_size, width, runs) for s in seeds]
                    for c in ("none", "heuristic")}
            pairs = list(zip(arms["heuristic"], arms["none"]))
            diffs = [h["final"] - n["final"] for h, n in pairs]
            diff = mean_se(diffs)
            ratio = mean_se([h["flops"] / n["flops"] for h, n in pairs])
            seconds = statistics.fmean(r["seconds"] for rs in arms.values() for r in rs)
            row = {"candidate": candidate, "epochs": epochs, "train_size": train, "host_width": width,
                   "heuristic_minus_host_pp": diff, "flops_ratio": ratio, "seconds_per_run": seconds,
                   "diffs": diffs}
            results.append(row)
            print(f"{candidate:>14s}: heuristic - host {diff[0]:+.2f} ± {diff[1]:.2f} pp final accuracy "
                  f"at x{ratio[0]:.2f} FLOPs; {seconds:.1f} s a run", flush=True)
    out = {"bench": "ppo_proxy", "seeds": list(seeds), "val_size": a.val_size, "results": results}
    write_report(out, a.out)


if __name__ == "__main__":
    main()
