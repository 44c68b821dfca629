"""How long ``esper --help`` and each command's ``--help`` take, against importing torch, in one run.

    python bench/bench_cli.py [--runs 10]

Each command runs ``--runs`` times in a fresh interpreter (``python -m esper ...``, as the
``esper`` script does), alternating with the peer, ``python -c "import torch"``, so both see
the same machine load. Prints the median and the fastest run of each, the median as a multiple
of the peer's, and, as its last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "esper --help": ["-m", "esper", "--help"],
    "esper train --help": ["-m", "esper", "train", "--help"],
    "esper ppo --help": ["-m", "esper", "ppo", "--help"],
    "esper export --help": ["-m", "esper", "export", "--help"],
}
PEER = ("import torch (peer)", ["-c", "import torch"])


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (default: 10)")
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name in (*COMMANDS, PEER[0])}
    for name, cmd in (*COMMANDS.items(), PEER):
        timed(cmd)  # warm the page cache: every command then reads its files from memory
    for _ in range(args.runs):
        for name, cmd in (*COMMANDS.items(), PEER):
            times[name].append(timed(cmd))
    peer = statistics.median(times[PEER[0]])
    figures = {"runs": args.runs, "python": sys.version.split()[0]}
    print(f"{'':<24}{'median s':>10}{'min s':>8}{'x torch':>9}")
    for name, values in times.items():
        median = statistics.median(values)
        figures[name] = {"median_s": round(median, 3), "min_s": round(min(values), 3),
                         "x_import_torch": round(median / peer, 3)}
        print(f"{name:<24}{median:>10.3f}{min(values):>8.3f}{median / peer:>9.2f}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
