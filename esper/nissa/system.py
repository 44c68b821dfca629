"""System metrics of a training run: the process's CPU and memory, the machine's, the GPU's.

``SystemSampler`` samples every ``interval`` seconds (the heartbeat's cadence) on a daemon
thread and emits a ``SystemMetrics`` event each time. CPU and memory come from psutil; GPU
utilisation from NVML (``pynvml``, from the nvidia-ml-py package) when it is installed and
the run is on a GPU, else GPU memory alone from torch.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

import psutil

from telemetry_schema import events as ev

log = logging.getLogger(__name__)


class SystemSampler:
    """Emits a ``SystemMetrics`` event through ``emit`` every ``interval`` seconds."""

    def __init__(self, emit: Callable[[ev.SystemMetrics], None], interval: float, device: str = "cpu") -> None:
        self.emit, self.interval, self.device = emit, max(0.1, float(interval)), device
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading of each counter is 0: start them now
        psutil.cpu_percent(None)
        self._gpu = _Gpu(device) if device.startswith("cuda") else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> ev.SystemMetrics:
        """The metrics now (CPU percentages over the time since the last sample)."""
        vm = psutil.virtual_memory()
        gpu = self._gpu.read() if self._gpu is not None else (None, None, None)
        return ev.SystemMetrics(cpu_percent=self._process.cpu_percent(None), cpu_total_percent=psutil.cpu_percent(None),
                                rss_bytes=self._process.memory_info().rss, mem_used_bytes=vm.total - vm.available,
                                mem_total_bytes=vm.total, gpu_util_percent=gpu[0], gpu_mem_used_bytes=gpu[1],
                                gpu_mem_total_bytes=gpu[2])

    def start(self) -> "SystemSampler":
        self._thread = threading.Thread(target=self._run, name="esper-system-metrics", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.emit(self.sample())
            except Exception:  # the log is closing or broken: the writer reports that itself
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Gpu:
    """GPU utilisation and memory of one CUDA device (NVML when available, else torch's memory)."""

    def __init__(self, device: str) -> None:
        import torch

        self.index = torch.device(device).index or 0
        self._torch = torch
        self._nvml = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
        except Exception:  # no nvidia-ml-py, or no driver: memory from torch, no utilisation
            self._nvml = None

    def read(self) -> tuple[float | None, int | None, int | None]:
        if self._nvml is not None:
            util = self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu
            mem = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
            return float(util), int(mem.used), int(mem.total)
        free, total = self._torch.cuda.mem_get_info(self.index)
        return None, int(total - free), int(total)
