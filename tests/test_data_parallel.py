"""Data-parallel `soaes-bench run` on the hf backend: `accelerate launch` with training/accelerate/cpu2.yaml (2 CPU
processes over gloo) gives the numbers of one process, and only rank 0 locks, writes and prints."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from soaes_bench import cli
from soaes_bench.paths import MODELS_DIR

REPO = Path(__file__).resolve().parents[1]
DRAFT = MODELS_DIR / "draft"  # 1 layer x 128, distilled: real (if poor) answers, and fast
# one task per kind: letter and circular multiple choice, generation, bits per byte. --limit 5 splits 3 + 2 over
# the ranks (lm-eval pads the short rank), and the circular item's 4 rotations sit on both ranks.
TASKS = "soaes_general_mc,soaes_domain_mc_circular,soaes_domain_qa,soaes_domain_bpb"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(run: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (run / "samples" / f"{task}.jsonl").open(encoding="utf-8")]


@pytest.mark.skipif(not (DRAFT / "config.json").is_file(), reason="no embedded draft model")
def test_two_processes_give_the_numbers_of_one(tmp_path, capsys):
    args = ["run", "--model", str(DRAFT), "--tasks", TASKS, "--limit", "5"]
    assert cli.main([*args, "--output", str(tmp_path / "one")]) == 0  # this process: 1 torch thread (conftest)
    capsys.readouterr()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "training/accelerate/cpu2.yaml"), "--main_process_port", str(_free_port()),
           "-m", "soaes_bench", *args, "--output", str(tmp_path / "two")]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "results.json").read_text(encoding="utf-8"))
    two = json.loads((tmp_path / "two" / "results.json").read_text(encoding="utf-8"))
    assert one["backend"]["data_parallel_size"] == 1 and two["backend"]["data_parallel_size"] == 2
    assert {k: v for k, v in one["backend"].items() if k != "data_parallel_size"} == \
        {k: v for k, v in two["backend"].items() if k != "data_parallel_size"}
    assert set(one["tasks"]) == set(two["tasks"]) == set(TASKS.split(","))
    for task, t in one["tasks"].items():
        # per item: identical (each document is scored whole on one rank, loglikelihoods bit for bit)
        assert _rows(tmp_path / "one", task) == _rows(tmp_path / "two", task), task
        assert t["n"] == two["tasks"][task]["n"]
        for metric, m in t["metrics"].items():
            # aggregates: the same items summed in rank order, not data order (a last-digit difference at most)
            other = two["tasks"][task]["metrics"][metric]
            for key in ("value", "stderr"):
                assert other[key] == (m[key] if m[key] is None else pytest.approx(m[key], rel=1e-12, abs=1e-12)), \
                    (task, metric, key)
    # rank 0 alone printed and wrote: one table, one "wrote" line, no lock file left, nothing else in the folder
    assert p.stdout.count("wrote ") == 1 and p.stdout.count("| task | n | metric |") == 1
    assert sorted(f.name for f in (tmp_path / "two").iterdir()) == ["results.json", "results.md", "samples"]
