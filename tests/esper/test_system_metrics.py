"""System metrics: sampled from the process and the machine, emitted on a thread until stopped."""

from __future__ import annotations

import threading

import psutil

from esper.nissa.system import SystemSampler


def test_a_sample_reads_the_process_and_the_machine():
    got = SystemSampler(lambda e: None, 5.0).sample()
    assert 0 < got.rss_bytes <= got.mem_total_bytes == psutil.virtual_memory().total
    assert 0 < got.mem_used_bytes <= got.mem_total_bytes
    assert got.cpu_percent >= 0 and 0 <= got.cpu_total_percent <= 100
    assert got.gpu_util_percent is None and got.gpu_mem_used_bytes is None  # a CPU run


def test_the_sampler_emits_until_stopped():
    seen, two = [], threading.Event()

    def emit(event):
        seen.append(event)
        if len(seen) >= 2:
            two.set()

    sampler = SystemSampler(emit, 0.1).start()
    assert two.wait(30)
    sampler.stop()
    after = len(seen)
    assert not sampler._thread.is_alive() and len(seen) == after
    assert all(e.rss_bytes > 0 for e in seen)


def test_a_failing_emit_ends_the_thread_quietly():
    def emit(event):
        raise ValueError("emit on a closed EventWriter")

    sampler = SystemSampler(emit, 0.1).start()
    sampler._thread.join(30)
    assert not sampler._thread.is_alive()
