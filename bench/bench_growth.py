"""Does growth pay? A paired comparison of growth against static hosts, over several seeds.

    python bench/bench_growth.py                 # 5 seeds, every arm (about 25 runs of `esper train`)
    python bench/bench_growth.py --quick         # 2 seeds, host alone and growth only
    python bench/bench_growth.py --growth "--heuristic min_epoch=1" --label early

Each arm is an `esper train` command line, run in this process one after another (1 torch thread),
on the same seeds:

    host     the host alone                            --controller none
    growth   the controller grows seeds                --controller heuristic  (+ --growth flags)
    static   a static host of growth's final size      --controller none --host-width W  (W: the
             width whose parameter count is nearest growth's final count, per seed)
    wide     the static host 2x wider                  --controller none --host-width 2x
    grown    growth's final architecture from epoch 1  --controller none --init-seeds SLOT=BP,...

Every arm is compared with the host alone *on the same seed* (paired differences, mean +- SE
over seeds, t = mean / SE), growth also with the wide host. Reported: final and best-epoch
validation accuracy (and loss), final parameters, FLOPs (training passes, and everything:
training + validation + counterfactual, from the run's log), wall seconds. A table, then one
JSON line; the JSON is also written to bench/results/growth-<label>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import shlex
import statistics
import sys
import time
from pathlib import Path

from telemetry_schema import read_run

from esper.cli import make_parser, spec_from_args
from esper.runtime.tasks import TaskOptions, build_task
from esper.session import run_training

ARMS = ("host", "growth", "static", "wide", "grown")
FORWARD = ("FOSSILIZED", "BLENDING", "HOLDING")
"""Stages in which a seed is part of the final model's forward pass."""


def run_arm(argv: list[str], runs_dir: Path, name: str) -> dict:
    """Run `esper train <argv>` in process; the figures of its log."""
    args = make_parser().parse_args(["train", *argv, "--runs-dir", str(runs_dir), "--run-name", name])
    spec, _ = spec_from_args(args)
    spec = dataclasses.replace(spec, save_model=False)
    t0 = time.perf_counter()
    out = run_training(spec)
    wall = time.perf_counter() - t0
    log = read_run(out.run_dir)
    epochs = log.rows("epoch_completed")
    s = out.summary
    arch = final_architecture(log)
    return {
        "argv": argv, "run_dir": str(out.run_dir), "wall_s": wall,
        "final_acc": s.final.val_acc, "best_acc": s.best_val_acc,
        "final_loss": s.final.val_loss, "best_loss": min(e["val_loss"] for e in epochs),
        "params": s.params, "host_params": out.host_params,
        "flops_total": s.flops, "flops_train": sum(e["flops_train"] for e in epochs),
        "germinated": s.germinated, "fossilized": s.fossilized, "pruned": s.pruned,
        "architecture": [(slot, bp) for slot, bp, _ in arch],
        "final_params": out.host_params + sum(n for _, _, n in arch),
    }


def code_fingerprint() -> str:
    """A hash of the training core's sources, except the heuristic controller (which a run with
    --controller none never calls): a cached run is reused only while this is unchanged."""
    root = Path(__file__).resolve().parents[1] / "esper"
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if path.name != "heuristic.py":
            h.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return h.hexdigest()[:16]


class RunCache:
    """Results of earlier runs of the same arguments and code (runs are deterministic on one machine),
    so the static arms are not re-run for every growth variant. --no-cache turns it off."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled, self.code = path, enabled, code_fingerprint()
        self.data = json.loads(path.read_text()) if enabled and path.is_file() else {}

    def key(self, argv: list[str]) -> str:
        return self.code + " " + " ".join(argv)

    def get(self, argv: list[str]) -> dict | None:
        hit = self.data.get(self.key(argv)) if self.enabled else None
        return dict(hit, cached=True) if hit else None

    def put(self, argv: list[str], row: dict) -> None:
        if self.enabled and "reused" not in row:
            self.data[self.key(argv)] = row
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data))


def final_architecture(log) -> list[tuple[str, str, int]]:
    """(slot, blueprint, params) of every seed in the final model's forward pass, in slot order."""
    germinated = {r["seed"]: (r["blueprint"], r["params"]) for r in log.rows("seed_germinated")}
    last: dict[str, dict] = {}
    for r in log.rows("stage_changed"):
        last[r["slot"]] = r
    return sorted((slot, *germinated[r["seed"]]) for slot, r in last.items()
                  if r["to_stage"] in FORWARD and r["seed"] in germinated)


def host_params_at(task: str, width: int, cache: dict) -> int:
    if width not in cache:
        host = build_task(task, TaskOptions(host_width=width)).host
        cache[width] = sum(p.numel() for p in host.parameters() if p.requires_grad)
    return cache[width]


def width_for_params(task: str, target: int, default: int, cache: dict) -> int:
    """The host width whose parameter count is nearest ``target`` (a multiple of 4 for a
    transformer's heads)."""
    step = 4 if build_task(task, TaskOptions()).topology == "transformer" else 1
    best, w = default, step
    while w <= 8 * default:
        if abs(host_params_at(task, w, cache) - target) < abs(host_params_at(task, best, cache) - target):
            best = w
        if host_params_at(task, w, cache) > target:
            break
        w += step
    return best


def paired(a: list[float], b: list[float]) -> dict:
    """Mean, standard error and t of the paired differences a - b (n - 1 in the SD)."""
    d = [x - y for x, y in zip(a, b)]
    mean = statistics.fmean(d)
    se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    t = mean / se if se and math.isfinite(se) and se > 0 else float("nan")
    return {"mean": mean, "se": se, "t": t, "n": len(d), "diffs": d}


def ratios(a: list[float], b: list[float]) -> dict:
    r = [x / y for x, y in zip(a, b)]
    return {"mean": statistics.fmean(r), "min": min(r), "max": max(r), "values": r}


def summarise(results: dict[str, list[dict]]) -> dict:
    """Paired figures of every arm against the host alone, and of growth against the wide host."""
    out = {}
    host = results["host"]
    pairs = [(arm, "host") for arm in results if arm != "host"]
    if "growth" in results and "wide" in results:
        pairs.append(("growth", "wide"))
    for arm, base in pairs:
        a, b = results[arm], results[base]
        col = lambda rows, k: [r[k] for r in rows]  # noqa: E731
        out[f"{arm}-{base}"] = {
            "final_acc_pp": paired(col(a, "final_acc"), col(b, "final_acc")),
            "best_acc_pp": paired(col(a, "best_acc"), col(b, "best_acc")),
            "final_loss": paired(col(a, "final_loss"), col(b, "final_loss")),
            "flops_total_ratio": ratios(col(a, "flops_total"), col(b, "flops_total")),
            "flops_train_ratio": ratios(col(a, "flops_train"), col(b, "flops_train")),
            "wall_ratio": ratios(col(a, "wall_s"), col(b, "wall_s")),
            "params_ratio": ratios(col(a, "params"), col(host, "params")),
        }
    return out


def fmt(p: dict) -> str:
    return f"{p['mean']:+.2f} ± {p['se']:.2f} (t {p['t']:+.1f})"


def table(results: dict[str, list[dict]], summary: dict) -> str:
    lines = [f"{'arm':<8} {'final acc %':>12} {'best acc %':>11} {'params':>8} {'train GFLOP':>12} "
             f"{'all GFLOP':>10} {'wall s':>7}"]
    for arm, rows in results.items():
        m = lambda k: statistics.fmean(r[k] for r in rows)  # noqa: E731
        lines.append(f"{arm:<8} {m('final_acc'):12.2f} {m('best_acc'):11.2f} {m('params'):8.0f} "
                     f"{m('flops_train') / 1e9:12.1f} {m('flops_total') / 1e9:10.1f} {m('wall_s'):7.1f}")
    lines.append("")
    lines.append(f"{'pair':<14} {'final acc pp':>24} {'best acc pp':>24} {'final loss':>24} "
                 f"{'FLOPs x (all)':>14} {'train x':>8} {'wall x':>7}")
    for name, s in summary.items():
        lines.append(f"{name:<14} {fmt(s['final_acc_pp']):>24} {fmt(s['best_acc_pp']):>24} "
                     f"{fmt(s['final_loss']):>24} {s['flops_total_ratio']['mean']:14.2f} "
                     f"{s['flops_train_ratio']['mean']:8.2f} {s['wall_ratio']['mean']:7.2f}")
    return "\n".join(lines)


def arm_argv(arm: str, seed: int, common: list[str], growth: list[str], task: str, default_width: int,
             grown: dict | None, cache: dict) -> list[str] | None:
    """The `esper train` arguments of ``arm`` on ``seed`` (None: same as the host alone)."""
    base = ["--seed", str(seed), "--task", task, *common]
    if arm == "host":
        return base + ["--controller", "none"]
    if arm == "growth":
        return base + ["--controller", "heuristic", *growth]
    if arm == "wide":
        return base + ["--controller", "none", "--host-width", str(2 * default_width)]
    if arm == "static":
        width = width_for_params(task, grown["final_params"], default_width, cache)
        return None if width == default_width else base + ["--controller", "none", "--host-width", str(width)]
    seeds = ",".join(f"{slot}={bp}" for slot, bp in grown["architecture"])
    return base + ["--controller", "none", "--init-seeds", seeds] if seeds else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=None, help="paired seeds (default 5; --quick 2)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 seeds, arms host and growth")
    p.add_argument("--arms", default=None, help=f"comma list of {', '.join(ARMS)} (default all; --quick host,growth)")
    p.add_argument("--task", default="synthetic-images")
    p.add_argument("--common", default="", help="flags for every arm, e.g. '--epochs 20'")
    p.add_argument("--growth", default="", help="flags for the growth arm, e.g. '--heuristic min_epoch=1'")
    p.add_argument("--label", default="default", help="names the result file bench/results/growth-<label>.json")
    p.add_argument("--runs-dir", default="runs/bench-growth")
    p.add_argument("--results-dir", default=str(Path(__file__).with_name("results")))
    p.add_argument("--no-cache", action="store_true", help="re-run every arm (default: reuse a run of the "
                   "same arguments and training code from <runs-dir>/cache.json, except growth arms)")
    args = p.parse_args(argv)
    arms = (args.arms or ("host,growth" if args.quick else ",".join(ARMS))).split(",")
    if "host" not in arms or any(a not in ARMS for a in arms) or ("growth" not in arms and set(arms) & {"static", "grown"}):
        p.error(f"--arms: a comma list of {', '.join(ARMS)} with host (static and grown need growth)")
    n = args.seeds or (2 if args.quick else 5)
    common, growth = shlex.split(args.common), shlex.split(args.growth)
    task0 = build_task(args.task, TaskOptions())
    default_width = task0.host.cfg.base if task0.topology == "cnn" else task0.host.cfg.width
    runs_dir = Path(args.runs_dir) / args.label
    results: dict[str, list[dict]] = {a: [] for a in ARMS if a in arms}
    cache: dict = {}
    runs = RunCache(Path(args.runs_dir) / "cache.json", not args.no_cache)
    for seed in range(args.first_seed, args.first_seed + n):
        for arm in results:
            grown = results["growth"][-1] if "growth" in results and results["growth"] else None
            argv_arm = arm_argv(arm, seed, common, growth, args.task, default_width, grown, cache)
            if argv_arm is None:
                row = dict(results["host"][-1], reused="host")
            else:
                row = (runs.get(argv_arm) if arm != "growth" else None) or run_arm(argv_arm, runs_dir, f"{arm}-s{seed}")
                runs.put(argv_arm, row)
            results[arm].append(row)
            sys.stderr.write(f"seed {seed} {arm:<7} acc {row['final_acc']:6.2f} best {row['best_acc']:6.2f} "
                             f"params {row['params']:7d} GFLOP {row['flops_total'] / 1e9:7.1f} "
                             f"{row['wall_s']:6.1f}s {' '.join(row['argv'])}\n")
    summary = summarise(results) if n > 1 else {}
    print(table(results, summary) if summary else "need 2 or more seeds for paired figures")
    report = {"bench": "growth", "label": args.label, "task": args.task, "seeds": n, "first_seed": args.first_seed,
              "common": args.common, "growth": args.growth, "summary": summary, "runs": results}
    out = Path(args.results_dir) / f"growth-{args.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
