"""Shared fixtures of the esper core tests: small, deterministic, single-threaded."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # other test suites may share the 2 cores
    yield
    torch.set_num_threads(threads)
