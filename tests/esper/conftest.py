"""Shared fixtures of the esper core tests: small, deterministic, single-threaded."""

import importlib.util
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="session")
def load_bench():
    """``load_bench(NAME)``: the module of ``bench/NAME.py`` (the benchmarks are scripts, not a package)."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # other test suites may share the 2 cores
    yield
    torch.set_num_threads(threads)
