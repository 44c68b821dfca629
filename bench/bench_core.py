"""Core overheads, measured side by side in one process (figures only, no pass/fail).

    python bench/bench_core.py [--steps 200] [--repeats 5]

1. wrapper: a training step of MorphogeneticModel with every slot DORMANT vs the bare host
   (target <= 3 % overhead);
2. telemetry: Trainer epochs with the EventSink writing a real run log vs a NullSink
   (target <= 1 % overhead);
3. throughput: training samples/s of the default CNN task (synthetic-images) on this CPU.
The last line is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from esper.kasmina import MorphogeneticModel, cross_entropy
from esper.leyline.config import TrainConfig
from esper.nissa import NullSink, new_run_id, start_run
from esper.nissa.sink import Sink
from esper.runtime.tasks import TaskOptions, build_task
from esper.tolaria.trainer import Trainer


def step_time(model, batches, steps: int) -> float:
    """Seconds per training step (forward, backward, AdamW) over ``steps`` steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    t0 = time.perf_counter()
    for i in range(steps):
        x, y = batches[i % len(batches)]
        loss = cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def bench_wrapper(steps: int, repeats: int) -> dict:
    task = build_task("synthetic-images")
    batches = [b for _, b in zip(range(16), task.train_loader)]
    host = task.host
    wrapped = MorphogeneticModel(host)
    step_time(host, batches, 10)
    bare, dormant = [], []
    for _ in range(repeats):  # interleaved so drift hits both alike
        bare.append(step_time(host, batches, steps))
        dormant.append(step_time(wrapped, batches, steps))
    b, d = statistics.median(bare), statistics.median(dormant)
    return {"host_step_ms": 1e3 * b, "dormant_wrapper_step_ms": 1e3 * d,
            "wrapper_overhead_pct": 100 * (d - b) / b, "batch_size": task.batch_size,
            "samples_per_s": task.batch_size / b}


class TimedSink(Sink):
    """Forwards every sink call to ``inner`` and adds up the seconds spent in them."""

    def __init__(self, inner: Sink) -> None:
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def __getattribute__(self, name: str):
        if name.startswith("_") or not hasattr(Sink, name):
            return object.__getattribute__(self, name)
        method = getattr(object.__getattribute__(self, "inner"), name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1
        return timed


def epoch_times(with_telemetry: bool, epochs: int, runs_dir: str, account: dict | None = None) -> list[float]:
    torch.manual_seed(0)
    task = build_task("synthetic-images")
    model = MorphogeneticModel(task.host)
    cfg = TrainConfig(epochs=epochs)
    rw = None
    sink = NullSink()
    if with_telemetry:
        rw, sink = start_run(runs_dir, run_id=new_run_id(f"bench-{time.monotonic_ns()}"), task=task.name,
                             topology="cnn", host_params=model.host_param_count(),
                             slot_ids=model.order, config={}, device="cpu")
        sink = TimedSink(sink)
    trainer = Trainer(model, task.train_loader, task.val_loader, num_classes=10, cfg=cfg, sink=sink)
    times = []
    for e in range(1, epochs + 1):
        t0 = time.perf_counter()
        trainer.run_epoch(e)
        times.append(time.perf_counter() - t0)
    if rw is not None:
        rw.close("completed")
        if account is not None:
            account["sink_s"] = account.get("sink_s", 0.0) + sink.seconds
            account["calls"] = account.get("calls", 0) + sink.calls
            account["flusher_cpu_s"] = account.get("flusher_cpu_s", 0.0) + rw.writer.flusher_cpu_s
            account["epoch_s"] = account.get("epoch_s", 0.0) + sum(times)
    return times


def bench_telemetry(epochs: int, repeats: int) -> dict:
    on, off, account = [], [], {}
    with tempfile.TemporaryDirectory() as runs_dir:
        for _ in range(repeats):
            off += epoch_times(False, epochs, runs_dir)
            on += epoch_times(True, epochs, runs_dir, account)
    a, b = statistics.median(off), statistics.median(on)
    # The A/B difference above is at the level of this machine's noise; the accounted cost is
    # what telemetry itself spends: its calls on the training thread, plus the writer thread's CPU.
    return {"epoch_s_telemetry_off": a, "epoch_s_telemetry_on": b, "telemetry_overhead_pct": 100 * (b - a) / a,
            "telemetry_calls_per_epoch": account["calls"] / len(on),
            "telemetry_call_us": 1e6 * account["sink_s"] / max(1, account["calls"]),
            "telemetry_accounted_pct": 100 * (account["sink_s"] + account["flusher_cpu_s"]) / account["epoch_s"],
            "telemetry_flusher_cpu_pct": 100 * account["flusher_cpu_s"] / account["epoch_s"],
            "trainer_samples_per_s": TaskOptions().synthetic.train_size / a}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads, as esper train (0 = torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    figures = {"torch_threads": torch.get_num_threads()}
    w = bench_wrapper(args.steps, args.repeats)
    figures.update(w)
    print(f"host step {w['host_step_ms']:.3f} ms | dormant wrapper {w['dormant_wrapper_step_ms']:.3f} ms | "
          f"overhead {w['wrapper_overhead_pct']:+.2f}% (target <= 3%)")
    t = bench_telemetry(args.epochs, max(1, args.repeats // 2))
    figures.update(t)
    print(f"epoch telemetry off {t['epoch_s_telemetry_off']:.3f} s | on {t['epoch_s_telemetry_on']:.3f} s | "
          f"overhead {t['telemetry_overhead_pct']:+.2f}% (target <= 1%)")
    print(f"telemetry accounted: {t['telemetry_calls_per_epoch']:.0f} sink calls per epoch at "
          f"{t['telemetry_call_us']:.1f} us each, writer thread {t['telemetry_flusher_cpu_pct']:.2f}% -> "
          f"{t['telemetry_accounted_pct']:.2f}% of epoch time (target <= 1%)")
    print(f"default CNN task: {w['samples_per_s']:.0f} samples/s (training step), "
          f"{t['trainer_samples_per_s']:.0f} samples/s (whole epoch incl. validation)")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
