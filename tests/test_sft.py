"""SFT: the single-stage ablation trained in a second process equals the one trained in this process."""

import json
import time
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from soaes_bench.errors import UserError
from soaes_bench.training.fixtures import micro_pipeline
from soaes_bench.training.sft import SFTConfig, SFTStage, Ablation, ablation_steps, run_sft
from soaes_bench.training.loop import TrainArgs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    return root, micro_pipeline(root)


def _cfg(root, parallel: bool) -> SFTConfig:
    args = TrainArgs(batch_size=4, micro_batch=4, lr=3e-3, warmup_steps=1, max_steps=3, seed=1)
    return SFTConfig(stages=[SFTStage(str(root / "sft1.jsonl"), args), SFTStage(str(root / "sft2.jsonl"), args)],
                     max_len=48, single_stage=True, general=str(root / "general.jsonl"), replay_fraction=0.3,
                     replay_len=16, ablation_in_parallel=parallel)


def test_ablation_in_a_second_process_matches_the_sequential_one(world, tmp_path):
    root, r = world
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the second process trains on one thread; the same here, so sums add up alike
    try:
        seq = run_sft(_cfg(root, False), r["init"], tmp_path / "seq", r["tokenizer"])
        t0 = time.perf_counter()
        par = run_sft(_cfg(root, True), r["init"], tmp_path / "par", r["tokenizer"])
    finally:
        torch.set_num_threads(threads)
    wall = par["single_stage"].pop("wall_s")  # the seconds the second process trained, measured there
    assert 0 < wall < time.perf_counter() - t0
    assert par["single_stage"] == seq["single_stage"] and par["single_stage"]["steps"] == 6
    a = load_file(tmp_path / "seq" / "single_stage" / "model" / "model.safetensors")
    b = load_file(tmp_path / "par" / "single_stage" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.get_num_threads() == threads   # the parent's threads are given back
    saved = json.loads((tmp_path / "par" / "single_stage" / "result.json").read_text())
    assert saved == {**par["single_stage"], "wall_s": wall}


def test_a_failing_ablation_process_is_one_clear_error(world, tmp_path, capfd):
    root, r = world
    abl = Ablation(_cfg(root, True), tmp_path / "no_model", tmp_path / "out", r["tokenizer"], resume=False)
    with pytest.raises(UserError, match="single-stage ablation process failed .exit code 2."):
        abl.join()
    err = capfd.readouterr().err
    assert "error: " in err and "no_model" in err and "Traceback" not in err


def test_ablation_budget_in_steps_or_in_example_tokens(world):
    root, _ = world
    stages = [(80, 8, 132.0), (720, 8, 60.0)]   # the reference recipe's stages: 84,480 + 345,600 example tokens
    assert ablation_steps(_cfg(root, False), stages, 8, 90.0) == 800
    tokens = replace(_cfg(root, False), ablation_budget="tokens")
    assert ablation_steps(tokens, stages, 8, 90.0) == round(430_080 / 720)   # 597 steps of 8 x 90 tokens
    assert ablation_steps(tokens, [(1, 1, 1.0)], 8, 90.0) == 1               # never zero steps


def test_an_unknown_ablation_budget_is_refused(tmp_path):
    from soaes_bench.config import from_dict
    with pytest.raises(UserError, match="ablation_budget"):
        from_dict(SFTConfig, {"ablation_budget": "epochs"}, "sft")
