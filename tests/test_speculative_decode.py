"""The speculative loop: greedy losslessness, round bookkeeping vs a cache-free reference, sampling distribution,
and the vocabulary compatibility check."""

import copy
import random

import pytest
import torch
from scipy import stats

from soaes_bench.errors import UserError
from soaes_bench.speculative.decode import (check_compatible, sampling_probs, speculative_generate,
                                             target_generate)
from soaes_bench.speculative.model_pair import make_qwen2, truncated_copy

V, EOS = 300, [0, 2]


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(1)
    # init_range 0.2: weights large enough that random models produce varied text and sometimes EOS
    target = make_qwen2(V, 2, 64, seed=0, eos_token_id=EOS, init_range=0.2)
    return {"target": target,
            "random": make_qwen2(V, 1, 32, seed=1, eos_token_id=EOS, init_range=0.2),
            "self": target,
            "truncated": truncated_copy(target, 1)}


def _prompts(n, seed=0):
    rng = random.Random(seed)
    return [[rng.randrange(3, V) for _ in range(rng.randint(1, 20))] for _ in range(n)]


@torch.inference_mode()
def reference_greedy(target, draft, prompt, gamma, max_new, eos):
    """Speculative greedy decoding with full forwards and no KV cache: the rounds the cached loop must reproduce."""
    seq, out, records = list(prompt), [], []
    while True:
        g = min(gamma, max_new - len(out) - 1)
        drafts = []
        for _ in range(g):
            drafts.append(int(draft(torch.tensor([seq + drafts])).logits[0, -1].argmax()))
        best = target(torch.tensor([seq + drafts])).logits[0, len(seq) - 1:].argmax(-1).tolist()
        n = 0
        while n < g and drafts[n] == best[n]:
            n += 1
        records.append((g, n))
        new = drafts[:n] + [best[n]]
        seq += new
        for t in new:
            out.append(t)
            if t in eos or len(out) >= max_new:
                return out, records


@pytest.mark.parametrize("draft_name", ["random", "self", "truncated"])
def test_greedy_is_lossless(models, draft_name):
    target, draft = models["target"], models[draft_name]
    stopped_on_eos = hit_limit = 0
    records = []
    for prompt in _prompts(30, seed=["random", "self", "truncated"].index(draft_name)):  # stable across runs
        base = target_generate(target, prompt, 24, eos_token_id=EOS)
        stopped_on_eos += base.tokens[-1] in EOS
        hit_limit += len(base.tokens) == 24 and base.tokens[-1] not in EOS
        for gamma in (1, 2, 3, 5):
            spec = speculative_generate(target, draft, prompt, gamma, 24, eos_token_id=EOS)
            assert spec.tokens == base.tokens, (draft_name, gamma, prompt)
            assert spec.target_forwards == len(spec.records) + (len(prompt) > 1)
            records += spec.records
    assert stopped_on_eos >= 3 and hit_limit >= 3  # both ways of stopping were exercised
    alpha = sum(a for _, a in records) / sum(p for p, _ in records)
    if draft_name == "self":
        assert all(a == p for p, a in records) and alpha == 1.0
    elif draft_name == "random":
        assert alpha < 0.05
    else:
        assert 0.02 < alpha < 0.98


@torch.inference_mode()
def test_bf16_eager_verification_equals_single_steps_and_stays_lossless(models):
    """The profiler's CPU setting (models.load_pair: bf16, eager attention): one multi-token verification forward
    gives the logits of single-token steps bit for bit, so greedy speculative decoding stays token-exact."""
    from transformers import DynamicCache

    target = copy.deepcopy(models["target"]).to(torch.bfloat16)
    target.set_attn_implementation("eager")
    draft = truncated_copy(target, 1)
    ctx, block = [5, 9, 13, 200, 7, 81], [4, 77, 150, 42]
    caches = [DynamicCache(config=target.config) for _ in range(2)]
    for c in caches:
        target(input_ids=torch.tensor([ctx]), cache=c, use_cache=True)
    together = target(input_ids=torch.tensor([block]), cache=caches[0], use_cache=True).logits[0]
    one_by_one = torch.cat([target(input_ids=torch.tensor([[t]]), cache=caches[1], use_cache=True).logits[0]
                            for t in block])
    assert torch.equal(together, one_by_one)
    for prompt in _prompts(12, seed=7):
        base = target_generate(target, prompt, 24, eos_token_id=EOS)
        for gamma in (1, 3, 5):
            assert speculative_generate(target, draft, prompt, gamma, 24, eos_token_id=EOS).tokens == base.tokens


@pytest.mark.parametrize("gamma", [1, 2, 3, 5])
def test_rounds_match_cache_free_reference(models, gamma):
    target, draft = models["target"], models["truncated"]
    for prompt in _prompts(6, seed=gamma):
        out, records = reference_greedy(target, draft, prompt, gamma, 16, EOS)
        spec = speculative_generate(target, draft, prompt, gamma, 16, eos_token_id=EOS)
        assert (spec.tokens, spec.records) == (out, records)


def test_limits_and_no_eos(models):
    target, draft = models["target"], models["truncated"]
    prompt = [5, 6, 7]
    assert speculative_generate(target, draft, prompt, 3, 0).tokens == []
    assert target_generate(target, prompt, 0).tokens == []
    base = target_generate(target, prompt, 1)
    spec = speculative_generate(target, draft, prompt, 4, 1)
    assert spec.tokens == base.tokens and len(base.tokens) == 1 and spec.records == [(0, 0)]
    long = speculative_generate(target, draft, prompt, 4, 30)  # no EOS given: exactly max_new_tokens
    assert len(long.tokens) == 30 and long.tokens == target_generate(target, prompt, 30).tokens
    with pytest.raises(ValueError):
        speculative_generate(target, draft, prompt, 0, 5)


def test_sampling_probs_top_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    assert sampling_probs(logits, 1.0).tolist() == pytest.approx([0.5, 0.3, 0.15, 0.05])
    assert sampling_probs(logits, 1.0, top_p=0.7).tolist() == pytest.approx([0.5 / 0.8, 0.3 / 0.8, 0, 0])
    assert sampling_probs(logits, 1.0, top_p=0.5).tolist() == pytest.approx([1, 0, 0, 0])
    hot = sampling_probs(logits, 2.0)
    assert hot.tolist() == pytest.approx((torch.tensor([0.5, 0.3, 0.15, 0.05]).sqrt() / 0.5).div(
        (torch.tensor([0.5, 0.3, 0.15, 0.05]).sqrt() / 0.5).sum()).tolist())


@torch.inference_mode()
def test_speculative_sampling_follows_target_distribution():
    """Two sampled tokens (spanning rounds, so cache rollback matters) follow p(t1) p(t2 | t1) of the target."""
    torch.set_num_threads(1)
    v, temp, top_p = 5, 1.5, 0.9
    target = make_qwen2(v, 2, 32, seed=3, init_range=0.2)
    draft = make_qwen2(v, 1, 32, seed=4, init_range=0.2)
    prompt = [1, 3, 2]

    def joint(model):
        p1 = sampling_probs(model(torch.tensor([prompt])).logits[0, -1], temp, top_p)
        rows = [p1[a] * sampling_probs(model(torch.tensor([prompt + [a]])).logits[0, -1], temp, top_p)
                for a in range(v)]
        return torch.stack(rows).flatten()

    p, q = joint(target), joint(draft)
    # the draft's own distribution would fail the test below; top-p leaves some pairs impossible
    assert 0.5 * (p - q).abs().sum() > 0.3 and (p == 0).sum() > 0
    gen = torch.Generator().manual_seed(0)
    n = 1500
    counts = torch.zeros(v * v)
    for _ in range(n):
        out = speculative_generate(target, draft, prompt, 2, 3, temperature=temp, top_p=top_p, generator=gen).tokens
        counts[out[0] * v + out[1]] += 1
    assert counts[p == 0].sum() == 0
    p = p.double() / p.double().sum()
    keep = p * n >= 5
    observed, expected = counts.double()[keep], p[keep] * n
    if p[~keep].sum() > 0:  # lump the rare outcomes into one bin
        observed = torch.cat([observed, counts.double()[~keep].sum().view(1)])
        expected = torch.cat([expected, p[~keep].sum().view(1) * n])
    assert stats.chisquare(observed.numpy(), expected.numpy()).pvalue > 1e-3
    tv = 0.5 * (counts / n - p).abs().sum().item()
    assert tv < 0.07


def _tokenizer(tmp_path, name, vocab_size=400, eos="<|endoftext|>"):
    from transformers import PreTrainedTokenizerFast

    from soaes_bench.training.fixtures import tiny_tokenizer

    tok = tiny_tokenizer(tmp_path / name, vocab_size=vocab_size)
    if eos != tok.eos_token:
        tok = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token=eos,
                                      pad_token="<|endoftext|>", additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    return tok


def test_check_compatible(tmp_path, models):
    tok = _tokenizer(tmp_path, "a")
    same = _tokenizer(tmp_path, "b")
    check_compatible(models["target"], models["truncated"], tok, same)  # passes silently
    small = _tokenizer(tmp_path, "c", vocab_size=380)
    other = make_qwen2(380, 1, 32)
    with pytest.raises(UserError) as e:
        check_compatible(models["target"], other, tok, small)
    msg = str(e.value)
    assert "\n" not in msg and "vocab_size 300 (target) vs 380 (draft)" in msg
    assert "tokenizer vocabularies differ (400 vs 380 entries" in msg
    with pytest.raises(UserError, match=r"eos \('<\|endoftext\|>', 0\) \(target\) vs \('<\|im_end\|>', 2\)"):
        check_compatible(models["target"], models["truncated"], tok, _tokenizer(tmp_path, "d", eos="<|im_end|>"))
