"""How much room is there above the heuristic on the PPO proxy? Fixed variants of it against the
heuristic itself, paired seeds, each variant one choice the learned policy can make differently.

    python bench/bench_ppo_headroom.py                       # every single-choice variant, 8 seeds
    python bench/bench_ppo_headroom.py alpha_target=0.7 curve=cosine+alpha_target=0.7 --seeds 4
    python bench/bench_ppo_headroom.py max_flops_ratio=2.5 controller=none+host_width=13 \
        --compare max_flops_ratio=2.5:controller=none+host_width=13      # growth against a static host

A variant is ``KEY=VALUE[+KEY=VALUE...]``: KEY is a slot setting a GERMINATE of the policy
carries (``blend``, ``tempo``, ``curve``) or another field of ``SlotConfig`` (``alpha_target``),
a field of ``HeuristicConfig`` (``blueprints=conv_light,attention``, ``max_flops_ratio=0``,
``max_live_seeds=2``), ``controller=none`` (no growth: the host alone) or ``host_width=N`` (the
host's width; the proxy's host is 8 wide). ``controller=none+host_width=N`` is a static host that
costs what a grown one costs: the peer that says whether growth beats spending the same compute on
a bigger network. ``--compare A:B`` prints A minus B over the same seeds. Every arm runs
``esper train``'s own path (``session.run_training``) on the environments' proxy (same epochs
and data sizes as ``esper ppo``'s episodes) on seeds that neither ``esper ppo``'s training nor
bench_ppo_learning's held-out evaluation uses. Printed per
variant: final accuracy minus the heuristic's (pct-pt, mean ± SE), FLOPs as a ratio to the
heuristic's, blueprints germinated. A learned controller that beats the heuristic by some margin
at equal compute needs a way of acting that does; this is where to look for one first.

Figures only, never pass/fail; the last line is one JSON object (also written with --out).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ppo_learning import arm_spec, mean_se, run_arm, write_report  # noqa: E402  (a sibling script)

from esper.cli import CHOICES  # noqa: E402
from esper.kasmina.hosts import CNNConfig  # noqa: E402
from esper.leyline.config import HeuristicConfig, SlotConfig  # noqa: E402
from esper.simic.config import EnvConfig  # noqa: E402
from esper.tamiyo.policy.actions import ALPHA_TARGETS, BLENDS, CURVES, TEMPOS  # noqa: E402

SETTINGS = {"blend": BLENDS, "tempo": TEMPOS, "curve": CURVES, "alpha_target": ALPHA_TARGETS}
"""Slot settings a variant may change, and their options (the policy's)."""
RUN = {"controller": "heuristic", "host_width": CNNConfig().base}
"""Settings of the run itself a variant may change, with the proxy's: no growth, a wider host."""
WORDS = {**SETTINGS, **CHOICES, "controller": ("heuristic", "none")}
"""The allowed values of the settings that take one of a few."""
SEEDS = tuple(range(2001, 2009))
"""Not bench_ppo_learning's held-out seeds (1001-1010), nor a training episode's (esper ppo --seed)."""


def default_variants() -> list[str]:
    """Every other option of each GERMINATE setting and of the blend's alpha target; each
    blueprint of the heuristic's rotation alone; the heuristic with a larger FLOPs budget and with
    none (its rotation starts with conv_heavy, which the default budget leaves out); and the other
    decisions a policy takes: when to germinate (on a plateau, later, until an earlier or later
    point of the run), how many seeds at once, which slot and blueprint first, which seeds to keep."""
    slot, h = SlotConfig(), HeuristicConfig()
    out = [f"{key}={v:g}" if isinstance(v, float) else f"{key}={v}"
           for key, options in SETTINGS.items() for v in options if v != getattr(slot, key)]
    out += [f"blueprints={b}" for b in h.blueprints]
    out += ["max_flops_ratio=2.5", "max_flops_ratio=0"]
    return out + ["trigger=plateau", "min_epoch=4", "grow_until=0.25", "grow_until=0.75", "max_live_seeds=1",
                  "slot_preference=last", "blueprint_order=cheapest", "fossilize_se=0", "fossilize_pp=0"]


def _value(default, text: str):
    if isinstance(default, tuple):
        return tuple(x for x in text.split(",") if x)
    if isinstance(default, bool):
        if text.lower() not in ("true", "false"):
            raise ValueError(text)
        return text.lower() == "true"
    return type(default)(text)


def parse_variant(text: str) -> tuple[dict, dict, dict]:
    """'KEY=VALUE+KEY=VALUE' -> (SlotConfig overrides, HeuristicConfig overrides, run overrides)."""
    slot, h = SlotConfig(), HeuristicConfig()
    slot_over, h_over, run_over = {}, {}, {}
    for part in text.split("+"):
        key, sep, raw = part.partition("=")
        target, over = (slot, slot_over) if hasattr(slot, key) else (h, h_over)
        if key in RUN:
            target, over = RUN, run_over
        elif not hasattr(target, key):
            target = None
        if not sep or target is None:
            raise SystemExit(f"bad variant {text!r}: {part!r} is not KEY=VALUE with KEY a field of SlotConfig "
                             f"or HeuristicConfig, or one of {', '.join(RUN)}")
        try:
            over[key] = _value(RUN[key] if target is RUN else getattr(target, key), raw)
            if over[key] not in WORDS.get(key, (over[key],)) or (key == "host_width" and over[key] < 1):
                raise ValueError(raw)
        except (TypeError, ValueError):
            raise SystemExit(f"bad variant {text!r}: {raw!r} is not a value of {key}") from None
    return slot_over, h_over, run_over


def parse_compare(text: str, variants: list[str]) -> tuple[str, str]:
    """'A:B' -> (A, B), each 'heuristic' or one of ``variants``."""
    a, sep, b = text.partition(":")
    known = {"heuristic", *variants}
    if not sep or a not in known or b not in known:
        raise SystemExit(f"bad --compare {text!r}: expected A:B with A and B 'heuristic' or variants of this run")
    return a, b


def paired(xs: list[dict], ys: list[dict]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Runs of two arms on the same seeds -> (final accuracy x - y, FLOPs x / y), each (mean, SE)."""
    return (mean_se([x["final"] - y["final"] for x, y in zip(xs, ys)]),
            mean_se([x["flops"] / y["flops"] for x, y in zip(xs, ys)]))


def run_variant(text: str, seed: int, proxy: tuple[int, int, int], runs: Path) -> dict:
    """One run of the heuristic with ``text``'s overrides ('heuristic': none) on (epochs, train, val),
    in a fresh directory under ``runs``."""
    slot_over, h_over, run_over = parse_variant(text) if text != "heuristic" else ({}, {}, {})
    spec = arm_spec(run_over.get("controller", "heuristic"), seed, *proxy, Path(tempfile.mkdtemp(dir=runs)),
                    host_width=run_over.get("host_width"), label="headroom")
    train = dataclasses.replace(spec.train, slot=dataclasses.replace(spec.train.slot, **slot_over))
    return run_arm(dataclasses.replace(spec, train=train, heuristic=dataclasses.replace(spec.heuristic, **h_over)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="*", help="KEY=VALUE[+KEY=VALUE...] (default: every single-choice variant)")
    p.add_argument("--seeds", type=int, default=len(SEEDS), help=f"paired seeds (at most {len(SEEDS)})")
    env = EnvConfig()
    p.add_argument("--epochs", type=int, default=env.episode_length + 1, help="epochs of a run (default: the proxy's)")
    p.add_argument("--train-size", type=int, default=env.synthetic_train, help="training samples per epoch")
    p.add_argument("--val-size", type=int, default=env.synthetic_val, help="validation samples")
    p.add_argument("--compare", action="append", default=[], metavar="A:B",
                   help="also print variant A minus variant B, paired (repeatable; 'heuristic' names the baseline)")
    p.add_argument("--out", default=None, help="also write the JSON object here")
    a = p.parse_args(argv)
    variants = a.variants or default_variants()
    for v in variants:
        parse_variant(v)  # every bad variant is reported before an hour of runs
    compares = [parse_compare(c, variants) for c in a.compare]
    torch.set_num_threads(1)
    seeds, proxy = SEEDS[:max(1, min(a.seeds, len(SEEDS)))], (a.epochs, a.train_size, a.val_size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = [run_variant("heuristic", s, proxy, Path(tmp)) for s in seeds]
        runs = {"heuristic": base}
        mean_final = sum(r["final"] for r in base) / len(base)
        print(f"heuristic: final {mean_final:.2f} % mean over {len(seeds)} seeds; blueprints "
              f"{','.join(base[0]['blueprints'])}", flush=True)
        for v in variants:
            res = runs[v] = [run_variant(v, s, proxy, Path(tmp)) for s in seeds]
            diffs = [r["final"] - b["final"] for r, b in zip(res, base)]
            diff, ratio = paired(res, base)
            rows.append({"variant": v, "minus_heuristic_pp": diff, "flops_ratio": ratio, "diffs": diffs,
                         "blueprints": [r["blueprints"] for r in res]})
            print(f"{v:>52s}: {diff[0]:+.2f} ± {diff[1]:.2f} pp at x{ratio[0]:.2f} the heuristic's FLOPs; "
                  f"{','.join(res[0]['blueprints'])}", flush=True)
        pairs = []
        for x, y in compares:
            diff, ratio = paired(runs[x], runs[y])
            pairs.append({"a": x, "b": y, "a_minus_b_pp": diff, "flops_ratio": ratio})
            print(f"{x} minus {y}: {diff[0]:+.2f} ± {diff[1]:.2f} pp at x{ratio[0]:.2f} its FLOPs", flush=True)
    out = {"bench": "ppo_headroom", "seeds": list(seeds), "proxy": dict(zip(("epochs", "train_size", "val_size"), proxy)),
           "heuristic_final_mean": mean_final, "heuristic_blueprints": [r["blueprints"] for r in base],
           "heuristic_flops_kind": base[0]["flops_kind"], "results": rows, "compared": pairs}
    write_report(out, a.out)


if __name__ == "__main__":
    main()
