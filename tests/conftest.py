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


# A tiny Qwen2 target and its 1-layer truncated draft on the tiny tokenizer: the speculative-decoding tests' pair.
@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from soaes_bench.training.fixtures import tiny_tokenizer

    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def pair(tok):
    import torch

    from soaes_bench.speculative.model_pair import make_qwen2, truncated_copy

    torch.set_num_threads(1)
    eos = [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]
    target = make_qwen2(len(tok), 2, 64, seed=0, eos_token_id=eos, init_range=0.2)
    return target, truncated_copy(target, 1)
