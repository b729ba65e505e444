"""Shared test settings."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a model hub


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models need one torch thread; two on a busy 2-core machine thrash (4x slower, OpenMP spinning)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
