"""Packing, token-ratio mixing and SFT label masking."""

import pytest
import torch

from soaes_bench.errors import UserError
from soaes_bench.training import data
from soaes_bench.training.fixtures import tiny_corpus, tiny_sft, tiny_tokenizer


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def test_pack_joins_documents_with_eos_and_is_deterministic():
    docs = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]]  # 10 tokens + 4 EOS = 14
    b = data.pack(docs, seq_len=7, eos_id=0, seed=5)
    assert b.shape == (2, 7)
    flat = b.flatten().tolist()
    assert flat[-1] == 0
    pieces, cur = [], []
    for x in flat:
        if x == 0:
            pieces.append(cur)
            cur = []
        else:
            cur.append(x)
    assert sorted(pieces) == sorted(docs)  # every document intact, each followed by EOS
    assert data.pack(docs, seq_len=4, eos_id=0, seed=5).shape == (3, 4)  # tail of 2 tokens dropped
    assert torch.equal(b, data.pack(docs, 7, 0, seed=5))
    assert any(not torch.equal(data.pack(docs, 7, 0, seed=s), b) for s in range(6, 12))
    with pytest.raises(UserError):
        data.pack([[1]], seq_len=8, eos_id=0, seed=0)


def test_mix_blocks_hits_the_token_fraction_exactly():
    domain = torch.arange(10).view(10, 1).repeat(1, 4)          # values 0..9
    general = (100 + torch.arange(3)).view(3, 1).repeat(1, 4)   # values 100..102 (small: must repeat)
    m = data.mix_blocks(domain, general, replay_fraction=0.25, n_blocks=40, seed=1)
    from_general = (m[:, 0] >= 100).sum().item()
    assert m.shape == (40, 4) and from_general == 10                # 25% of tokens
    assert sorted(m[m[:, 0] < 100, 0].tolist()) == sorted(list(range(10)) * 3)  # 3 full epochs of domain
    assert torch.equal(m, data.mix_blocks(domain, general, 0.25, 40, seed=1))
    assert not torch.equal(m, data.mix_blocks(domain, general, 0.25, 40, seed=2))
    assert (data.mix_blocks(domain, general, 0.0, 7, 0)[:, 0] < 100).all()
    with pytest.raises(UserError):
        data.mix_blocks(domain, general, 1.5, 10, 0)


def test_mix_blocks_with_focus_gives_each_source_its_share_and_leaves_the_plain_mix_alone():
    domain = torch.arange(10).view(10, 1).repeat(1, 4)
    general = (100 + torch.arange(3)).view(3, 1).repeat(1, 4)
    focus = (200 + torch.arange(2)).view(2, 1).repeat(1, 4)       # 2 blocks read 6 times each
    m = data.mix_blocks(domain, general, 0.25, 40, seed=1, focus=focus, focus_fraction=0.3)
    first = m[:, 0]
    assert ((first >= 100) & (first < 200)).sum() == 10 and (first >= 200).sum() == 12 and (first < 100).sum() == 18
    assert sorted(first[first >= 200].tolist()) == [200] * 6 + [201] * 6
    # without a focus share the mix is the one recipes without `focus` always had
    assert torch.equal(data.mix_blocks(domain, general, 0.25, 40, 1, focus, 0.0), data.mix_blocks(domain, general, 0.25, 40, 1))
    with pytest.raises(UserError, match="must be <= 1"):
        data.mix_blocks(domain, general, 0.8, 10, 0, focus, 0.3)
    with pytest.raises(UserError, match="no blocks"):
        data.mix_blocks(domain, general, 0.2, 10, 0, None, 0.3)


def test_with_replay_gives_general_text_its_share_of_loss_tokens():
    # 3 examples with 4, 9 and 2 loss tokens (labels[1:] not IGNORE) = 15; blocks of 6 tokens carry 5 each
    ig = data.IGNORE
    examples = [{"input_ids": [1] * 6, "labels": [ig, ig, 5, 5, 5, 5]},
                {"input_ids": [1] * 10, "labels": [ig] + [7] * 9},
                {"input_ids": [1] * 3, "labels": [9, 9, 9]}]
    assert [data.loss_tokens(e) for e in examples] == [4, 9, 2]
    blocks = (100 + torch.arange(2)).view(2, 1).repeat(1, 6)      # 2 blocks: drawn again when exhausted
    mixed = data.with_replay(examples, blocks, fraction=0.5, seed=3)
    assert len(mixed) - len(examples) == 3 and mixed[:3] == examples                      # 0.5 -> as many general loss tokens as SFT ones
    replay = mixed[3:]
    assert all(r["labels"] == r["input_ids"] and len(r["input_ids"]) == 6 for r in replay)
    assert sum(map(data.loss_tokens, replay)) == 15
    assert sorted(r["input_ids"][0] for r in replay[:2]) == [100, 101]   # one full pass before any repeat
    assert data.with_replay(examples, blocks, 0.5, seed=3) == mixed
    assert len(data.with_replay(examples, blocks, fraction=0.25, seed=3)) == 4   # 0.25/0.75 * 15 / 5 = 1 row
    assert data.with_replay(examples, blocks, 0.0, seed=3) == examples


def test_packed_corpus_holds_out_whole_documents(tok, tmp_path):
    path = tiny_corpus(tmp_path / "g.jsonl", 40, seed=3)
    train, val = data.packed_corpus(path, tok, seq_len=16, seed=0, val_blocks=2)
    docs = data.tokenize(data.read_texts(path), tok)
    tr, va = data.split_docs(docs, 32, seed=0)
    assert len(tr) + len(va) == len(docs) and val.shape == (2, 16)
    assert train.numel() == (sum(len(d) + 1 for d in tr) // 16) * 16


def test_sft_labels_only_the_reply_and_im_end(tok):
    msgs = [{"role": "user", "content": "国有资产是什么"}, {"role": "assistant", "content": "国家所有的资产"}]
    ex = data.sft_example(msgs, tok, max_len=256)
    full = tok.apply_chat_template(msgs, tokenize=False)
    assert tok.decode(ex["input_ids"]) == full
    labelled = tok.decode([i for i, l in zip(ex["input_ids"], ex["labels"]) if l != data.IGNORE])
    assert labelled == "国家所有的资产<|im_end|>\n"
    masked = tok.decode([i for i, l in zip(ex["input_ids"], ex["labels"]) if l == data.IGNORE])
    assert masked == "<|im_start|>user\n国有资产是什么<|im_end|>\n<|im_start|>assistant\n"


def test_sft_multi_turn_and_truncation(tok):
    msgs = [{"role": "user", "content": "甲"}, {"role": "assistant", "content": "乙"},
            {"role": "user", "content": "丙"}, {"role": "assistant", "content": "丁"}]
    ex = data.sft_example(msgs, tok, max_len=256)
    labelled = tok.decode([i for i, l in zip(ex["input_ids"], ex["labels"]) if l != data.IGNORE])
    assert labelled == "乙<|im_end|>\n丁<|im_end|>\n"
    prompt_len = len(tok(tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True))["input_ids"])
    assert data.sft_example(msgs[:2], tok, max_len=prompt_len) is None  # prompt alone fills the budget: dropped
    short = data.sft_example(msgs[:2], tok, max_len=prompt_len + 1)
    assert len(short["input_ids"]) == prompt_len + 1


def test_load_sft_and_pad_collate(tok, tmp_path):
    path = tiny_sft(tmp_path / "s.jsonl", 6, seed=0)
    exs, st = data.load_sft(path, tok, max_len=64)
    assert st.rows == 6 and st.kept == len(exs) == 6
    batch = data.make_pad_collate(tok.pad_token_id)(exs[:3])
    n = max(len(e["input_ids"]) for e in exs[:3])
    assert batch["input_ids"].shape == (3, n)
    for row, e in enumerate(exs[:3]):
        k = len(e["input_ids"])
        assert batch["attention_mask"][row].sum() == k
        assert (batch["labels"][row, k:] == data.IGNORE).all() and (batch["input_ids"][row, k:] == tok.pad_token_id).all()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "messages": [{"role": "user", "content": "q"}]}\n')
    with pytest.raises(UserError, match="no assistant turn"):
        data.load_sft(bad, tok, 64)


def test_distillation_keeps_only_the_blocks_its_steps_read():
    from soaes_bench.training.distill import used_blocks

    blocks = torch.arange(50).view(10, 5)
    assert used_blocks(blocks, 10, seed=0) is blocks and used_blocks(blocks, 64, seed=0) is blocks
    kept = used_blocks(blocks, 4, seed=0)
    rows = kept[:, 0].tolist()
    assert kept.shape == (4, 5) and rows == sorted(set(rows)) and all(r % 5 == 0 for r in rows)  # whole rows, in order
    assert torch.equal(kept, used_blocks(blocks, 4, seed=0))
    assert any(not torch.equal(kept, used_blocks(blocks, 4, seed=s)) for s in range(1, 6))
