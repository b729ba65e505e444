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


@pytest.fixture(scope="session")
def fixture_tasks(tmp_path_factory):
    """The shipped task YAML + utils.py with data/ replaced by the tiny fixture files (tests/fixtures/tasks_data)."""
    import shutil
    from pathlib import Path

    from soaes_bench.paths import tasks_dir

    dst = tmp_path_factory.mktemp("tasks") / "tasks"
    shutil.copytree(tasks_dir(), dst, ignore=shutil.ignore_patterns("data", "__pycache__"))
    for suite in ("soaes_general", "soaes_domain"):
        shutil.copytree(Path(__file__).parent / "fixtures" / "tasks_data" / suite, dst / suite / "data")
    return dst
