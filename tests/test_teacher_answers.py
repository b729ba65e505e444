"""Distillation on the teacher's own answers: questions, batched greedy generation, the cache, and the phase."""

import json

import pytest

from soaes_bench.io import read_jsonl
from soaes_bench.models import load_tokenizer, new_model, save_model
from soaes_bench.speculative.decode import target_generate
from soaes_bench.training import teacher_answers as TA
from soaes_bench.training.distill import DistillConfig, run_distill
from soaes_bench.training.fixtures import tiny_corpus, tiny_sft, tiny_tokenizer
from soaes_bench.training.loop import TrainArgs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("answers")
    tok = tiny_tokenizer(root / "tok")
    tiny_sft(root / "sft.jsonl", 12, seed=4)
    tiny_corpus(root / "docs.jsonl", 20, seed=2)
    teacher = new_model("micro", tok, seed=5, max_position=128).eval()
    save_model(teacher, tok, root / "teacher")
    return root, load_tokenizer(root / "tok"), teacher


def test_questions_are_the_chat_prompts_and_skip_held_out_rows(world):
    root, tok, _ = world
    rows = read_jsonl(root / "sft.jsonl")
    render = lambda msgs, **kw: tok(tok.apply_chat_template(msgs, tokenize=False, **kw), add_special_tokens=False)["input_ids"]
    got = TA.questions([str(root / "docs.jsonl"), str(root / "sft.jsonl")], tok)   # documents have no question
    assert got == [render(r["messages"][:1], add_generation_prompt=True) for r in rows]
    held_out = {tuple(render(rows[3]["messages"]))}
    assert TA.questions([str(root / "sft.jsonl")], tok, held_out) == got[:3] + got[4:]


def test_pick_is_seeded_and_keeps_order():
    prompts = [[i] for i in range(10)]
    a = TA.pick(prompts, 4, seed=1)
    assert a == TA.pick(prompts, 4, seed=1) and len(a) == 4 and a == sorted(a)
    assert TA.pick(prompts, 4, seed=2) != a
    assert TA.pick(prompts, 20, seed=1) == prompts


def test_batched_left_padded_answers_equal_one_by_one_greedy_decoding(world):
    """generate() pads prompts of different lengths into one batch and ignores EOS; each row must be what the
    profiler's own one-sequence greedy decoder writes (EOS not stopping it either)."""
    root, tok, teacher = world
    prompts = TA.questions([str(root / "sft.jsonl")], tok)[:5]
    assert len({len(p) for p in prompts}) > 1   # the batch really is padded
    out = TA.generate(teacher, prompts, new_tokens=12, pad_id=tok.pad_token_id, batch=3)
    for p, seq in zip(prompts, out):
        assert seq[:len(p)] == p and len(seq) == len(p) + 12
        assert seq[len(p):] == target_generate(teacher, p, 12, eos_token_id=None).tokens
    assert teacher.generation_config.eos_token_id is not None   # the teacher's own setting is given back


def test_answers_are_cached_by_teacher_prompts_and_length(world, tmp_path, monkeypatch):
    root, tok, teacher = world
    prompts = TA.questions([str(root / "sft.jsonl")], tok)[:2]
    calls = []
    real = TA.generate
    monkeypatch.setattr(TA, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    path = tmp_path / "answers.json"
    first = TA.cached(teacher, root / "teacher", prompts, 4, tok.pad_token_id, path)
    assert TA.cached(teacher, root / "teacher", prompts, 4, tok.pad_token_id, path) == first and len(calls) == 1
    TA.cached(teacher, root / "teacher", prompts, 5, tok.pad_token_id, path)
    TA.cached(teacher, root / "teacher", prompts[:1], 5, tok.pad_token_id, path)
    assert len(calls) == 3


def test_distillation_trains_on_the_answers_and_the_baseline_does_not(world, tmp_path, monkeypatch):
    root, tok, _ = world
    from soaes_bench.training import data

    packed = []
    real_pack = data.pack
    monkeypatch.setattr(data, "pack", lambda docs, *a: packed.append(docs) or real_pack(docs, *a))
    cfg = DistillConfig(data=[str(root / "docs.jsonl"), str(root / "sft.jsonl")], seq_len=16, val_blocks=2, top_k=4,
                        teacher_answers=5, answer_tokens=6,
                        train=TrainArgs(batch_size=2, micro_batch=2, lr=1e-3, warmup_steps=1, max_steps=2, seed=1))
    s = run_distill(cfg, root / "teacher", tmp_path / "d", tokenizer_dir=root / "tok")
    saved = json.loads((tmp_path / "d" / "teacher_answers.json").read_text())["sequences"]
    assert s["teacher_answers"]["answers"] == len(saved) == 5
    assert s["teacher_answers"]["tokens"] == sum(map(len, saved))
    train_docs = packed[1]                      # packed[0]: the held-out documents
    assert packed[2] == train_docs + saved      # the distilled draft's text: the data plus the answers
    assert s["baseline"]["steps"] == s["distilled"]["steps"] == 2


def test_answers_only_trains_the_draft_on_the_answers_alone(world, tmp_path, monkeypatch):
    root, tok, _ = world
    from soaes_bench.training import data

    packed = []
    real_pack = data.pack
    monkeypatch.setattr(data, "pack", lambda docs, *a: packed.append(docs) or real_pack(docs, *a))
    cfg = DistillConfig(data=[str(root / "sft.jsonl")], seq_len=16, val_blocks=2, top_k=4, teacher_answers=6,
                        answer_tokens=6, answers_only=True, baseline=False,
                        train=TrainArgs(batch_size=2, micro_batch=2, lr=1e-3, warmup_steps=1, max_steps=1, seed=1))
    run_distill(cfg, root / "teacher", tmp_path / "d", tokenizer_dir=root / "tok")
    saved = json.loads((tmp_path / "d" / "teacher_answers.json").read_text())["sequences"]
    assert packed[2] == saved


def test_answers_only_without_answers_is_refused():
    from soaes_bench.config import from_dict
    from soaes_bench.errors import UserError

    with pytest.raises(UserError, match="answers_only needs teacher_answers"):
        from_dict(DistillConfig, {"answers_only": True}, "distill")
