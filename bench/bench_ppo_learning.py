"""Does the learned controller learn, and does it pay? Learning curves of ``esper ppo`` and a
held-out evaluation of the policy it wrote.

    python bench/bench_ppo_learning.py                        # default esper ppo, then 5 held-out seeds
    python bench/bench_ppo_learning.py --quick                # 3-minute learning budget, 3 seeds
    python bench/bench_ppo_learning.py --seeds 10             # ... evaluated on 10 held-out seeds
    python bench/bench_ppo_learning.py --run runs/ppo/X       # evaluate run X's policy (its curves from its log)
    python bench/bench_ppo_learning.py --run runs/ppo/X --full-task   # ... on esper train's default task too

Learning: ``esper ppo`` with its defaults (or the flags after ``--``), then the curves read back
from its log through ``telemetry_schema.read_run``: return, approx KL, explained variance and the
entropy of every head against updates.

Held-out evaluation: seeds that no training episode used (other synthetic data, other host
weights). On each, three arms go through ``esper train``'s own path (``session.run_training``):
the host alone (``--controller none``), the heuristic, and the trained policy
(``policy:PATH``, greedy). They run the environments' proxy task (same epochs, same data sizes)
and, with ``--full-task``, esper train's default task as well. Paired differences of final and
best validation accuracy as mean ± SE over seeds, training FLOPs as ratios to the host alone
(the run's counted FLOPs when the core reports them, else seed-parameter-epochs as a stand-in,
said so in the output), parameters added, germinated / fossilized seeds.

Figures and ratios only, never pass/fail. The last line is one JSON object; the same object is
written under bench/results/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from esper.leyline.actions import Op
from esper.leyline.config import TrainConfig
from esper.runtime.synthetic import SyntheticConfig
from esper.runtime.tasks import TaskOptions
from esper.session import RunSpec, run_training
from esper.simic.losses import pooled_explained_variance
from esper.simic.ppo import MOMENTS
from esper.simic.training import Configs
from esper.tamiyo.policy.actions import HEADS_FOR_OP
from telemetry_schema import read_run

HELD_OUT = tuple(range(1001, 1011))
"""Evaluation seeds: training episodes draw data from the run's --seed and hosts from
episode_seed(seed, env, episode); none of these is either."""
KL_BAND = (1e-3, 5e-2)


def mean_se(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if math.isfinite(x)]
    if not xs:
        return float("nan"), float("nan")
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def write_report(out: dict, path: str | None) -> None:
    """The bench's last line, ``out`` as JSON; also written to ``path`` when given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(out))
    sys.stdout.write(json.dumps(out) + "\n")


def learn(ppo_argv: list[str], runs_dir: Path) -> Path:
    """Run ``esper ppo`` (its output to stderr) and return its run directory."""
    from rich.console import Console

    from esper.simic.cli import add_ppo_arguments, run_ppo
    args = add_ppo_arguments(argparse.ArgumentParser()).parse_args(
        ["--runs-dir", str(runs_dir), "--run-name", "bench-ppo", *ppo_argv])
    t0 = time.perf_counter()
    rc = run_ppo(args, Console(file=sys.stderr))
    if rc != 0:
        raise SystemExit(f"esper ppo ended with status {rc}")
    print(f"learning: {time.perf_counter() - t0:.0f} s wall", flush=True)
    return max(runs_dir.iterdir(), key=lambda p: p.stat().st_mtime)


def curves(run_dir: Path) -> dict:
    """Per update: return, KL, EV, entropy per head (from the run's log)."""
    log = read_run(run_dir)
    ups = sorted(log.rows("ppo_update"), key=lambda r: r["step"])
    scalars: dict[str, dict[int, float]] = {}  # name -> step -> value, in one pass over the log's scalars
    for r in log.rows("scalar"):
        scalars.setdefault(r["name"], {})[r["step"]] = r["value"]
    returns, rewards, agreement = (scalars.get(f"ppo/{k}", {}) for k in ("episode_return", "reward_per_step",
                                                                          "teacher_agreement"))
    moments = {k: scalars.get(f"ppo/{k}", {}) for k in MOMENTS}
    seconds = sum(scalars.get("ppo/round_seconds", {}).values())
    cpu = {k: list(scalars.get(f"ppo/round_cpu_seconds_{k}", {}).values()) for k in ("main", "worker")}
    heads = sorted({h for u in ups for h, _ in u["head_entropy"]})
    ops = [r["op"] for r in sorted(log.rows("controller_decision"), key=lambda r: r["seq"])]
    rows = [{"update": u["step"], "episode_return": returns.get(u["step"]), "reward_per_step": rewards.get(u["step"]),
             "approx_kl": u["approx_kl"], "explained_variance": u["explained_variance"],
             "clip_fraction": u["clip_fraction"], "entropy": dict(u["head_entropy"]),
             "teacher_agreement": agreement.get(u["step"]),
             "moments": [moments[k].get(u["step"]) for k in MOMENTS]} for u in ups]
    return {"rows": rows, "heads": heads, "learning_seconds": seconds, "cpu": cpu, "ops": ops}


def head_use(ops: list[str]) -> dict[str, float]:
    """Share of ``ops`` (op names of decisions) whose op uses each head (HEADS_FOR_OP): a head
    no decision uses gets no gradient from the return, so its entropy says nothing of learning."""
    if not ops:
        return {}
    heads = dict.fromkeys(h for used in HEADS_FOR_OP.values() for h in used)
    return {h: sum(h in HEADS_FOR_OP[Op[o]] for o in ops) / len(ops) for h in heads}


def curve_summary(c: dict) -> dict:
    rows = c["rows"]
    if not rows:
        return {"updates": 0}
    kls = [r["approx_kl"] for r in rows]
    tail = rows[-max(1, len(rows) // 5):]  # the last fifth of the updates
    head = rows[:max(1, len(rows) // 5)]
    ent = {}
    for h in c["heads"]:
        first = [r["entropy"][h] for r in head if h in r["entropy"]]
        last = [r["entropy"][h] for r in tail if h in r["entropy"]]
        if first and last:
            ent[h] = {"first": statistics.fmean(first), "last": statistics.fmean(last)}
    ret = [r["episode_return"] for r in rows if r["episode_return"] is not None]
    fifth = max(1, len(ret) // 5)
    cpu = {k: statistics.median(v) for k, v in c["cpu"].items() if v}
    idle_round = sum(cpu.values())  # a core per process: the main process waits on the busiest worker
    return {"updates": len(rows), "learning_seconds": c["learning_seconds"],
            "wall_seconds_per_round": c["learning_seconds"] / len(rows), "cpu_seconds_per_round": cpu,
            "idle_rounds_in_780s": 780.0 / idle_round if idle_round else float("nan"),
            "kl_in_band_share": sum(KL_BAND[0] <= k <= KL_BAND[1] for k in kls) / len(kls),
            "kl_median": statistics.median(kls),
            "ev_last_fifth": statistics.fmean(r["explained_variance"] for r in tail
                                              if math.isfinite(r["explained_variance"] or float("nan"))) if any(
                math.isfinite(r["explained_variance"] or float("nan")) for r in tail) else float("nan"),
            "return_first_fifth": statistics.fmean(ret[:fifth]) if ret else float("nan"),
            "return_last_fifth": statistics.fmean(ret[-fifth:]) if ret else float("nan"),
            "ev_pooled_last_fifth": pooled_explained_variance(
                [tuple(r["moments"]) for r in tail if None not in r.get("moments", [None])]),
            "teacher_agreement_last_fifth": _mean_of(r["teacher_agreement"] for r in tail),
            "entropy": ent, "head_use_last_fifth": head_use(c["ops"][-max(1, len(c["ops"]) // 5):])}


def _mean_of(xs) -> float:
    """Mean of the finite values (NaN when none)."""
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return statistics.fmean(xs) if xs else float("nan")


def arm_spec(controller: str, seed: int, epochs: int, train: int | None, val: int | None, runs_dir: Path,
             host_width: int | None = None, label: str = "eval") -> RunSpec:
    """The run of one arm on one seed; ``label`` keeps the arms' run names apart (run ids carry
    a timestamp of whole seconds, and short runs end within one)."""
    synthetic = SyntheticConfig()
    if train:
        synthetic = dataclasses.replace(synthetic, train_size=train, val_size=val)
    return RunSpec(controller=controller, runs_dir=str(runs_dir), run_name=f"{label}-{seed}",
                   train=TrainConfig(epochs=epochs, seed=seed), save_model=False,
                   task_options=TaskOptions(synthetic=synthetic, host_width=host_width))


def run_arm(spec: RunSpec) -> dict:
    out = run_training(spec)
    log = read_run(out.run_dir)
    epochs = log.rows("epoch_completed")
    accs = [e["val_acc"] for e in epochs]
    s = out.summary
    counted = getattr(s, "flops", 0) or 0
    if counted:
        flops, kind = float(counted), "counted"
    else:  # stand-in: (host + running seeds' parameters) per epoch, summed
        flops, kind = float(sum(e["total_params"] for e in epochs)), "param-epochs"
    return {"final": accs[-1], "best": max(accs), "flops": flops, "flops_kind": kind,
            "added_params": epochs[-1]["total_params"] - epochs[-1]["host_params"],
            "germinated": s.germinated, "fossilized": s.fossilized, "pruned": s.pruned,
            "blueprints": [r["blueprint"] for r in log.rows("seed_germinated")]}


def evaluate(policy: Path, seeds: tuple[int, ...], epochs: int, train: int | None, val: int | None) -> dict:
    arms = {"none": "none", "heuristic": "heuristic", "policy": f"policy:{policy}"}
    res: dict[str, list[dict]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for arm, ctrl in arms.items():
                r = run_arm(arm_spec(ctrl, seed, epochs, train, val, Path(tmp), label=f"eval-{arm}"))
                res[arm].append(r)
                print(f"  seed {seed} {arm:9s}: final {r['final']:6.2f} best {r['best']:6.2f} "
                      f"flops x{r['flops'] / res['none'][-1]['flops']:.2f} added params {r['added_params']:6d} "
                      f"germinated {r['germinated']} fossilized {r['fossilized']} {','.join(r['blueprints'])}",
                      flush=True)
    return {"seeds": list(seeds), "epochs": epochs, "train_size": train, "val_size": val, "arms": res,
            "paired": paired(res)}


def paired(res: dict) -> dict:
    out = {}
    for a, b in (("policy", "heuristic"), ("policy", "none"), ("heuristic", "none")):
        d = {}
        for key in ("final", "best"):
            d[key] = mean_se([x[key] - y[key] for x, y in zip(res[a], res[b])])
        d["flops_ratio"] = mean_se([x["flops"] / y["flops"] for x, y in zip(res[a], res[b])])
        out[f"{a}-{b}"] = d
    return out


def print_eval(name: str, e: dict) -> None:
    print(f"{name}: {len(e['seeds'])} held-out seeds, {e['epochs']} epochs; paired differences (pct-pt, mean ± SE), "
          f"FLOPs ratio ({e['arms']['none'][0]['flops_kind']})")
    for k, d in e["paired"].items():
        print(f"  {k:18s} final {d['final'][0]:+6.2f} ± {d['final'][1]:.2f}   best {d['best'][0]:+6.2f} ± "
              f"{d['best'][1]:.2f}   FLOPs x{d['flops_ratio'][0]:.2f} ± {d['flops_ratio'][1]:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=None, help="an esper ppo run directory to evaluate (skips learning)")
    p.add_argument("--quick", action="store_true", help="learn for 3 minutes, evaluate 3 seeds")
    p.add_argument("--seeds", type=int, default=None, help=f"held-out seeds to evaluate (default 5, at most {len(HELD_OUT)})")
    p.add_argument("--full-task", action="store_true", help="also evaluate on esper train's default task")
    p.add_argument("--runs-dir", default="runs/bench-ppo")
    p.add_argument("--out", default="bench/results/ppo_learning.json")
    p.add_argument("ppo_args", nargs="*", help="flags for esper ppo (after --)")
    a = p.parse_args()
    torch.set_num_threads(1)
    ppo_argv = list(a.ppo_args) + (["--time-budget", "180"] if a.quick else [])
    run_dir = Path(a.run) if a.run else learn(ppo_argv, Path(a.runs_dir))
    c = curves(run_dir)
    summary = curve_summary(c)
    print(f"run {run_dir}: {summary['updates']} updates in {summary['learning_seconds']:.0f} s "
          f"({summary.get('wall_seconds_per_round', float('nan')):.1f} s per round; CPU per round "
          f"{summary.get('cpu_seconds_per_round')}: on idle cores, ~{summary.get('idle_rounds_in_780s', float('nan')):.0f} "
          f"rounds in the default 780 s)")
    step = max(1, len(c["rows"]) // 15)
    rows = c["rows"]
    for i in list(range(0, len(rows), step)) + ([len(rows) - 1] if (len(rows) - 1) % step else []):
        r = rows[i]
        window = [x["episode_return"] for x in rows[max(0, i - step + 1):i + 1] if x["episode_return"] is not None]
        ret = f"{statistics.fmean(window):+.3f}" if window else "   n/a"  # episodes ended since the last row
        heads = " ".join(f"{h}={v:.2f}" for h, v in sorted(r["entropy"].items()))
        agree = "" if r.get("teacher_agreement") is None else f" teacher agreement {r['teacher_agreement']:.2f}"
        print(f"  update {r['update']:4d} return {ret} kl {r['approx_kl']:.2e} ev {r['explained_variance']:+.2f}"
              f"{agree} | H {heads}")
    print(f"KL in [{KL_BAND[0]:g}, {KL_BAND[1]:g}] on {100 * summary.get('kl_in_band_share', 0):.0f}% of updates "
          f"(median {summary.get('kl_median', float('nan')):.2e}); explained variance over the last fifth "
          f"{summary.get('ev_last_fifth', float('nan')):+.2f} (mean of the rounds'), "
          f"{summary.get('ev_pooled_last_fifth', float('nan')):+.2f} (their samples pooled); return first fifth "
          f"{summary.get('return_first_fifth', float('nan')):+.3f} -> last fifth "
          f"{summary.get('return_last_fifth', float('nan')):+.3f}")
    use = summary.get("head_use_last_fifth", {})
    for h, e in summary.get("entropy", {}).items():
        print(f"  entropy {h:12s} {e['first']:.3f} -> {e['last']:.3f}  (its op taken in "
              f"{100 * use.get(h, float('nan')):.1f} % of the last fifth's decisions)")
    cfgs = Configs.from_dict(json.loads(read_run(run_dir).rows("run_started")[0]["config_json"]))
    n_seeds = min(len(HELD_OUT), a.seeds or (3 if a.quick else 5))
    seeds = HELD_OUT[:n_seeds]
    proxy = evaluate(run_dir / "policy.pt", seeds, cfgs.env.episode_length + 1, cfgs.env.synthetic_train,
                     cfgs.env.synthetic_val)
    print_eval("proxy task", proxy)
    result = {"bench": "ppo_learning", "run": str(run_dir), "curve": summary, "curve_rows": c["rows"],
              "proxy_eval": proxy}
    if a.full_task:
        full = evaluate(run_dir / "policy.pt", seeds, TrainConfig.epochs, None, None)
        print_eval("esper train default task", full)
        result["full_eval"] = full
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "curve_rows"}, default=str))


if __name__ == "__main__":
    main()
