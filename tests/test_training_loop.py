"""The one training loop: schedule, data stream, determinism, kill/resume bit-exactness, 2-process launch."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from soaes_bench.errors import UserError
from soaes_bench.training import data
from soaes_bench.training.fixtures import tiny_corpus, tiny_tokenizer
from soaes_bench.training.loop import DataStream, TrainArgs, lm_loss, lr_at, resolve_steps, stream_indices, train
from soaes_bench.models import new_model

REPO = Path(__file__).resolve().parents[1]



@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    tok = tiny_tokenizer(root / "tok")
    tiny_corpus(root / "general.jsonl", 60, seed=1)
    blocks, _ = data.packed_corpus(root / "general.jsonl", tok, 32, seed=0)
    return root, tok, blocks


def _args(**kw):
    base = dict(batch_size=4, micro_batch=2, lr=3e-3, warmup_steps=2, max_steps=8, checkpoint_every=2, log_every=1, seed=7)
    return TrainArgs(**{**base, **kw})


def test_lr_schedule_warmup_then_cosine():
    lrs = [lr_at(s, 100, 1.0, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    mid = 10 + 45  # half-way through the cosine part
    assert lrs[mid] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lr_at(100, 100, 1.0, 10, 0.1) == pytest.approx(0.1)


def test_stream_covers_each_item_once_per_epoch_and_is_seeded():
    s = stream_indices(0, 20, 10, seed=3)
    assert sorted(s[:10]) == list(range(10)) and sorted(s[10:]) == list(range(10))
    assert s == stream_indices(0, 20, 10, seed=3) and s != stream_indices(0, 20, 10, seed=4)
    assert stream_indices(7, 5, 10, seed=3) == s[7:12]


def _padded(order, lengths, batch):
    return sum(len(b) * max(lengths[i] for i in b) for b in (order[j:j + batch] for j in range(0, len(order), batch)))


def test_grouped_stream_sorts_chunks_of_batches_by_length():
    g = torch.Generator().manual_seed(0)
    n, batch, group = 50, 4, 3  # chunks of 12 items; the last chunk holds 2
    lengths = torch.randint(5, 200, (n,), generator=g).tolist()
    plain, grouped = DataStream(n, 9).epoch(0), DataStream(n, 9, lengths, batch, group).epoch(0)
    assert plain == stream_indices(0, n, n, seed=9)  # group 0 is the ungrouped stream
    for lo in range(0, n, batch * group):  # each chunk holds the same items as the plain permutation's chunk
        chunk = grouped[lo:lo + batch * group]
        assert sorted(chunk) == sorted(plain[lo:lo + batch * group])
        spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b))
                       for b in (chunk[j:j + batch] for j in range(0, len(chunk), batch)))
        assert all(hi <= lo2 for (_, hi), (lo2, _) in zip(spans, spans[1:]))  # batches do not overlap in length
    assert _padded(grouped, lengths, batch) < 0.8 * _padded(plain, lengths, batch)
    # seeded, different per epoch, and the batch order inside a chunk is shuffled (not longest first)
    s = DataStream(n, 9, lengths, batch, group)
    assert s.indices(0, 2 * n) == grouped + DataStream(n, 9, lengths, batch, group).epoch(1)
    assert s.epoch(1) != grouped

    def longest_batch_at(order):  # which batch of the first chunk holds its longest item
        chunk = order[:batch * group]
        return chunk.index(max(chunk, key=lambda i: lengths[i])) // batch
    assert len({longest_batch_at(s.epoch(e)) for e in range(8)}) > 1
    with pytest.raises(ValueError, match="length"):
        DataStream(n, 9, lengths[:-1], batch, group)


def test_budget_and_batch_checks():
    assert resolve_steps(TrainArgs(batch_size=4, micro_batch=2, max_tokens=1000), 32) == 8
    with pytest.raises(ValueError):
        TrainArgs(max_steps=3, max_tokens=10)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_after_kill_gives_identical_weights(tiny, tmp_path):
    _, tok, blocks = tiny
    ds = data.Blocks(blocks)
    ref = train(new_model("micro", tok, seed=7, max_position=64), ds, data.collate_blocks, _args(), tmp_path / "a")
    assert ref.steps == 8 and ref.stopped_by == "done"

    calls = {"n": 0}

    def dying_loss(model, batch):  # "kill" in the middle of step 6 (2 micro-batches per step)
        calls["n"] += 1
        if calls["n"] == 11:
            raise KeyboardInterrupt
        return lm_loss(model, batch)

    with pytest.raises(KeyboardInterrupt):
        train(new_model("micro", tok, seed=7, max_position=64), ds, data.collate_blocks, _args(), tmp_path / "b",
              loss_fn=dying_loss)
    state = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 4
    # a fresh process would rebuild the model from scratch, then resume
    res = train(new_model("micro", tok, seed=7, max_position=64), ds, data.collate_blocks, _args(), tmp_path / "b")
    assert res.steps == 8
    a, b = _weights(ref.model), _weights(res.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and training did something
    init = _weights(new_model("micro", tok, seed=7, max_position=64))
    assert not torch.equal(init["model.layers.0.mlp.up_proj.weight"], a["model.layers.0.mlp.up_proj.weight"])


def test_until_step_pauses_and_resume_refuses_other_settings(tiny, tmp_path):
    _, tok, blocks = tiny
    ds = data.Blocks(blocks)
    r = train(new_model("micro", tok, seed=7, max_position=64), ds, data.collate_blocks, _args(), tmp_path, until_step=3)
    assert r.stopped_by == "until_step" and r.steps == 3
    with pytest.raises(UserError, match="lr"):
        train(new_model("micro", tok, seed=7, max_position=64), ds, data.collate_blocks, _args(lr=1e-3), tmp_path)
    with pytest.raises(UserError, match="group_by_length"):
        train(new_model("micro", tok, seed=7, max_position=64), ds, data.collate_blocks, _args(group_by_length=2), tmp_path)
    # a checkpoint written before a setting existed resumes when the setting keeps its default
    state_file = tmp_path / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    del state["fingerprint"]["group_by_length"]
    state_file.write_text(json.dumps(state))
    r = train(new_model("micro", tok, seed=7, max_position=64), ds, data.collate_blocks, _args(), tmp_path)
    assert r.steps == 8 and r.stopped_by == "done"


def test_loss_decreases_on_repetitive_text(tiny, tmp_path):
    _, tok, blocks = tiny
    res = train(new_model("micro", tok, seed=1, max_position=64), data.Blocks(blocks), data.collate_blocks,
                _args(max_steps=20, lr=1e-2, checkpoint_every=100), tmp_path)
    losses = [row["loss"] for row in res.log if "loss" in row]
    assert losses[-1] < losses[0] - 0.5
    rows = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 20 and rows[-1]["tok_per_s"] > 0


def test_two_cpu_processes_match_one(tiny, tmp_path):
    """`accelerate launch` with training/accelerate/cpu2.yaml (2 gloo processes) reaches the same weights as 1."""
    root, tok, _ = tiny
    recipe = (REPO / "training/recipes/micro.yaml").read_text()
    for key, val in (("data", root / "general.jsonl"), ("output", tmp_path / "out{N}"), ("work_dir", tmp_path / "work{N}")):
        recipe = "\n".join(f"{key}: {val}" if line.startswith(f"{key}:") else line for line in recipe.splitlines())
    recipe += f"\ntokenizer: {root / 'tok'}\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for n in (1, 2):
        path = tmp_path / f"r{n}.yaml"
        path.write_text(recipe.replace("{N}", str(n)))
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "training/accelerate/cpu2.yaml"),
               "--main_process_port", "29531", "-m", "soaes_bench", "train", "base", "--recipe", str(path)]
        if n == 1:
            cmd = [sys.executable, "-m", "soaes_bench", "train", "base", "--recipe", str(path)]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=110, cwd=tmp_path)
        assert p.returncode == 0, p.stderr[-3000:]
    s1 = json.loads((tmp_path / "work1" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "work2" / "summary.json").read_text())
    assert s2["processes"] == 2 and s1["processes"] == 1 and s1["steps"] == s2["steps"] == 12
    assert s1["tokens"] == s2["tokens"]
    assert s1["last_train_loss"] == pytest.approx(s2["last_train_loss"], rel=1e-3)
    from safetensors.torch import load_file

    w1 = load_file(str(tmp_path / "out1" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "out2" / "model.safetensors"))
    for k in w1:
        torch.testing.assert_close(w1[k].float(), w2[k].float(), atol=2e-2, rtol=2e-2)  # bf16 shipped weights


def test_time_cap_checkpoints_and_resume_finishes(tiny, tmp_path):
    _, tok, blocks = tiny
    ds = data.Blocks(blocks)
    r = train(new_model("micro", tok, seed=7, max_position=64), ds, data.collate_blocks, _args(max_minutes=1e-6), tmp_path)
    assert r.stopped_by == "time" and r.steps == 1
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["step"] == 1
    r = train(new_model("micro", tok, seed=7, max_position=64), ds, data.collate_blocks, _args(), tmp_path)
    assert r.stopped_by == "done" and r.steps == 8  # max_minutes is not part of the fingerprint
