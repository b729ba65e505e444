"""Losses against independent computations (torch kl_div, numpy, hand values) and their limiting cases."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from soaes_bench.training import losses


def _logits(n=6, v=11, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, v, generator=g) * scale


def test_forward_and_reverse_kl_match_torch_kl_div():
    s, t = F.log_softmax(_logits(seed=1), -1), F.log_softmax(_logits(seed=2), -1)
    fwd = F.kl_div(s, t, reduction="none", log_target=True).sum(-1)  # KL(T || S)
    rev = F.kl_div(t, s, reduction="none", log_target=True).sum(-1)  # KL(S || T)
    torch.testing.assert_close(losses.divergence(s, t, "forward_kl"), fwd)
    torch.testing.assert_close(losses.divergence(s, t, "reverse_kl"), rev)
    assert not torch.allclose(fwd, rev)


def test_jsd_matches_numpy_definition():
    s, t = F.log_softmax(_logits(seed=3), -1), F.log_softmax(_logits(seed=4), -1)
    beta = 0.3
    P, Q = t.exp().double().numpy(), s.exp().double().numpy()  # teacher, student
    M = beta * P + (1 - beta) * Q
    expect = beta * (P * np.log(P / M)).sum(-1) + (1 - beta) * (Q * np.log(Q / M)).sum(-1)
    np.testing.assert_allclose(losses.divergence(s, t, "jsd", beta).numpy(), expect, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", losses.KINDS)
def test_identical_and_uniform_give_zero(kind):
    x = F.log_softmax(_logits(seed=5), -1)
    assert losses.divergence(x, x, kind).abs().max() < 1e-6
    u = torch.full((3, 7), -math.log(7))
    assert losses.divergence(u, u, kind).abs().max() < 1e-6
    assert losses.distill_rows(torch.zeros(3, 7), torch.zeros(3, 7), kind, temperature=2.0).abs().max() < 1e-6


def test_jsd_beta_limits_follow_trl_convention():
    s, t = F.log_softmax(_logits(seed=6), -1).double(), F.log_softmax(_logits(seed=7), -1).double()
    fwd, rev = losses.divergence(s, t, "forward_kl"), losses.divergence(s, t, "reverse_kl")
    torch.testing.assert_close(losses.divergence(s, t, "jsd", 0.0), fwd)
    torch.testing.assert_close(losses.divergence(s, t, "jsd", 1.0), rev)
    eps = 1e-5  # the endpoints are the normalised limits JSD/beta and JSD/(1-beta)
    torch.testing.assert_close(losses.divergence(s, t, "jsd", eps) / eps, fwd, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(losses.divergence(s, t, "jsd", 1 - eps) / eps, rev, rtol=1e-3, atol=1e-6)
    with pytest.raises(ValueError):
        losses.divergence(s, t, "jsd", 1.5)


def test_total_variation_hand_value():
    t = torch.log(torch.tensor([[0.5, 0.5]]))
    s = torch.log(torch.tensor([[0.9, 0.1]]))
    assert losses.divergence(s, t, "tv").item() == pytest.approx(0.4, abs=1e-6)


@pytest.mark.parametrize("kind", losses.KINDS)
def test_temperature_squared_scaling(kind):
    s, t, tau = _logits(seed=8), _logits(seed=9), 2.5
    expect = tau**2 * losses.divergence(F.log_softmax(s / tau, -1), F.log_softmax(t / tau, -1), kind, 0.4)
    torch.testing.assert_close(losses.distill_rows(s, t, kind, beta=0.4, temperature=tau), expect)
    # and tau really softens: at tau = 1 the value differs
    assert not torch.allclose(losses.distill_rows(s, t, kind, beta=0.4, temperature=1.0), expect)


@pytest.mark.parametrize("mode", losses.TOPK_MODES)
@pytest.mark.parametrize("kind", losses.KINDS)
def test_topk_equals_full_when_k_is_vocab(kind, mode):
    s, t = _logits(seed=10), _logits(seed=11)
    s.requires_grad_(True)
    vals, idx = losses.teacher_topk(t, k=t.size(-1), temperature=1.5)
    got = losses.topk_distill_rows(s, vals, idx, kind, beta=0.3, temperature=1.5, mode=mode)
    full = losses.distill_rows(s, t, kind, beta=0.3, temperature=1.5)
    torch.testing.assert_close(got, full, rtol=1e-4, atol=1e-5)
    (g,) = torch.autograd.grad(got.sum(), s)
    (gf,) = torch.autograd.grad(full.sum(), s)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(g, gf, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", losses.KINDS)
def test_topk_tail_close_to_full_when_k_covers_the_mass(kind):
    s, t = _logits(n=5, v=50, seed=12), _logits(n=5, v=50, seed=13, scale=0.5)
    t[:, :4] += 12.0  # teacher puts > 99.9% of its mass on 4 tokens
    vals, idx = losses.teacher_topk(t, k=4)
    assert vals.exp().sum(-1).min() > 0.999
    full = losses.distill_rows(s, t, kind)
    tail = losses.topk_distill_rows(s, vals, idx, kind, mode="tail")
    # merging the tail into one bucket can only lose information (data-processing inequality): a lower bound
    assert (tail <= full + 1e-4).all()
    if kind in ("forward_kl", "tv"):  # weighted by the teacher's (tiny) tail: close for any student
        torch.testing.assert_close(tail, full, rtol=2e-2, atol=2e-3)
    # a student that also concentrates (as training drives it to) makes every kind close
    s_near = t + 0.3 * _logits(n=5, v=50, seed=17, scale=1.0)
    torch.testing.assert_close(losses.topk_distill_rows(s_near, vals, idx, kind), losses.distill_rows(s_near, t, kind),
                               rtol=5e-2, atol=2e-3)
    # with a small k that does NOT cover the mass, the approximation is visibly off
    t2 = _logits(n=5, v=50, seed=14)
    v2, i2 = losses.teacher_topk(t2, k=2)
    assert (losses.topk_distill_rows(s, v2, i2, kind) - losses.distill_rows(s, t2, kind)).abs().max() > 1e-2


@pytest.mark.parametrize("v,k", [(50, 4), (23, 23)])
def test_fused_topk_tail_equals_plain_autograd(v, k):
    x = _logits(n=6, v=v, seed=21, scale=4.0).double()
    ids = torch.argsort(torch.rand(6, v, generator=torch.Generator().manual_seed(22)), -1)[:, :k]
    x[0, ids[0, 0]] = -800.0  # a top-k id whose probability underflows to 0: its log-prob must stay finite, exact
    gt, gl = torch.randn(6, k, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    xa = x.clone().requires_grad_()
    top, tail = losses._TopkTail.apply(xa, ids)
    (ga,) = torch.autograd.grad((top * gt).sum() + (tail * gl).sum(), xa)
    xb = x.clone().requires_grad_()
    ptop, ptail = losses.topk_tail_plain(xb, ids)
    (gb,) = torch.autograd.grad((ptop * gt).sum() + (ptail * gl).sum(), xb)
    torch.testing.assert_close(top, ptop)
    assert top[0, 0].item() == pytest.approx(-800.0 - torch.logsumexp(x[0], -1).item())
    if k < v:
        torch.testing.assert_close(tail, ptail)
        torch.testing.assert_close(ga, gb)
    else:  # nothing left: the tail sits at the floor and passes no gradient (the plain route's floor column
        # passes exp(-80)-sized ones)
        assert (tail == losses._LOG_FLOOR).all()
        torch.testing.assert_close(ga, gb, atol=1e-30, rtol=1e-9)
    assert torch.isfinite(ga).all()


def test_causal_lm_loss_matches_manual_and_ignores_masked():
    logits = _logits(n=2 * 5, v=9, seed=15).view(2, 5, 9)
    labels = torch.tensor([[1, 2, 3, 4, 5], [6, 7, losses.IGNORE, 8, losses.IGNORE]])
    terms = []
    for b in range(2):
        for pos in range(4):
            y = labels[b, pos + 1].item()
            if y != losses.IGNORE:
                terms.append(-F.log_softmax(logits[b, pos], -1)[y].item())
    assert losses.causal_lm_loss(logits, labels).item() == pytest.approx(np.mean(terms), rel=1e-5)
    assert losses.causal_lm_loss(logits, labels, reduction="sum").item() == pytest.approx(np.sum(terms), rel=1e-5)
    mask, targets = losses.next_token_rows(labels)
    assert mask.sum().item() == len(terms) == targets.numel()
    rows = losses.token_ce(logits[mask], targets)
    assert rows.sum().item() == pytest.approx(np.sum(terms), rel=1e-5)


@pytest.mark.parametrize("kind", ["ce", "jsd"])
def test_chunked_equals_unchunked_values_and_gradients(kind):
    g = torch.Generator().manual_seed(16)
    n, h, v = 37, 8, 23
    hidden = torch.randn(n, h, generator=g, requires_grad=True)
    weight = torch.randn(v, h, generator=g, requires_grad=True)
    if kind == "ce":
        targets = torch.randint(0, v, (n,), generator=g)
        fn, args = losses.token_ce, (targets,)
    else:
        vals, idx = losses.teacher_topk(torch.randn(n, v, generator=g), k=5, temperature=2.0)

        def fn(logits, a, b):
            return losses.topk_distill_rows(logits, a, b, "jsd", beta=0.5, temperature=2.0)

        args = (vals, idx)
    full = fn(hidden @ weight.t(), *args).sum()
    gh, gw = torch.autograd.grad(full, (hidden, weight))
    chunked = losses.chunked_rows_sum(hidden, weight, fn, *args, chunk_size=8)
    ch, cw = torch.autograd.grad(chunked, (hidden, weight))
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(ch, gh)
    torch.testing.assert_close(cw, gw)
    # given logits (weight None): several checkpointed chunks, or one chunk that is not recomputed
    logits = (hidden @ weight.t()).detach().requires_grad_()
    (gl,) = torch.autograd.grad(fn(logits, *args).sum(), logits)
    for size in (8, n):
        value = losses.chunked_rows_sum(logits, None, fn, *args, chunk_size=size)
        torch.testing.assert_close(value, full)
        torch.testing.assert_close(torch.autograd.grad(value, logits)[0], gl)


def test_causal_lm_loss_gradient_equals_the_sliced_form_bit_for_bit():
    """Shifting the labels (one ignored label at the end) instead of slicing the logits changes no gradient bit."""
    logits = _logits(n=3 * 7, v=11, seed=23).view(3, 7, 11).requires_grad_()
    labels = torch.randint(0, 11, (3, 7), generator=torch.Generator().manual_seed(24))
    labels[1, :4] = losses.IGNORE
    (g,) = torch.autograd.grad(losses.causal_lm_loss(logits, labels, reduction="sum"), logits)
    sliced = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), reduction="sum")
    (gs,) = torch.autograd.grad(sliced, logits)
    assert torch.equal(g, gs) and g[:, -1].abs().sum() == 0


# ---------------------------------------------------------------- held-out top1_agreement and its standard error
def test_clustered_rate_hand_values():
    from soaes_bench.training.distill import clustered_rate

    # equal blocks: r = 8/12; residuals a - r t = 1/3, -5/3, 4/3 -> squares sum 42/9; * 3/2 = 7 -> sqrt(7) / 12
    r, se = clustered_rate([3, 1, 4], [4, 4, 4])
    assert r == pytest.approx(2 / 3) and se == pytest.approx(math.sqrt(7) / 12)
    # unequal blocks: r = 0.7; residuals 0.6, -2.1, 1.5 -> 7.02 * 3/2 = 10.53 -> sqrt(10.53) / 10
    r, se = clustered_rate([2, 0, 5], [2, 3, 5])
    assert r == pytest.approx(0.7) and se == pytest.approx(math.sqrt(10.53) / 10)
    assert clustered_rate([3], [4]) == (0.75, None)  # one block: no spread to estimate
    with pytest.raises(ValueError):
        clustered_rate([1, 2], [3])


def test_clustered_rate_is_wider_when_blocks_agree_together():
    """10 blocks of 50 tokens, 5 agreeing on every token and 5 on none: 10 independent units, not 500; the
    token-level binomial SE sqrt(r (1 - r) / 500) = 0.022 understates it about sqrt(50) times."""
    from soaes_bench.training.distill import clustered_rate

    r, se = clustered_rate([50] * 5 + [0] * 5, [50] * 10)
    binomial = math.sqrt(r * (1 - r) / 500)
    assert r == 0.5 and se == pytest.approx(math.sqrt(10 / 9 * 10 * 25 ** 2) / 500)  # = 1/6
    assert se > 7 * binomial
    # tokens spread evenly over blocks (each block at the pooled rate): no between-block variance
    assert clustered_rate([25] * 10, [50] * 10) == (0.5, 0.0)


def test_heldout_agreement_uses_blocks_as_units():
    from soaes_bench.speculative.acceptance import greedy_agreement
    from soaes_bench.speculative.model_pair import make_qwen2
    from soaes_bench.training.distill import clustered_rate, heldout_metrics

    teacher, draft = make_qwen2(40, 1, 16, seed=0), make_qwen2(40, 1, 16, seed=1)
    blocks = torch.randint(0, 40, (5, 9), generator=torch.Generator().manual_seed(0))
    m = heldout_metrics(draft, teacher, blocks, batch=2)["tasks"]["draft_heldout"]
    with torch.no_grad():
        s, t = draft(input_ids=blocks).logits[:, :-1], teacher(input_ids=blocks).logits[:, :-1]
    hits = [round(greedy_agreement(t[i], s[i]) * 8) for i in range(5)]
    r, se = clustered_rate(hits, [8] * 5)
    assert m["n"] == 40 and m["metrics"]["top1_agreement"]["value"] == pytest.approx(greedy_agreement(t, s))
    assert m["metrics"]["top1_agreement"] == pytest.approx({"value": r, "stderr": se})


@pytest.mark.parametrize("ce_weight", [0.0, 0.25])
def test_full_vocabulary_distillation_equals_a_top_k_cache_of_the_whole_vocabulary(ce_weight):
    """top_k 0 runs the teacher on each batch; its loss and gradients must equal the cached path's with k = V,
    whose top-k rows are tested against the full divergence above."""
    from soaes_bench.speculative.model_pair import make_qwen2
    from soaes_bench.training.distill import DistillConfig, collate_cached, make_kd_loss

    teacher, draft = make_qwen2(40, 1, 16, seed=0), make_qwen2(40, 1, 16, seed=1)
    blocks = torch.randint(0, 40, (3, 9), generator=torch.Generator().manual_seed(0))
    full_cfg = DistillConfig(top_k=0, temperature=1.5, ce_weight=ce_weight, chunk_size=7)
    cached_cfg = DistillConfig(top_k=40, temperature=1.5, ce_weight=ce_weight, chunk_size=7)
    with torch.no_grad():
        vals, idx = losses.teacher_topk(teacher(input_ids=blocks).logits.flatten(0, 1), 40, 1.5)
    items = [{"input_ids": blocks[i], "t_values": vals.view(3, 9, 40)[i], "t_indices": idx.view(3, 9, 40)[i]}
             for i in range(3)]
    cached_batch = collate_cached(items)
    full_batch = {"input_ids": blocks, "labels": blocks.clone()}

    def loss_and_grad(cfg, batch, teacher_or_none):
        draft.zero_grad()
        total, count = make_kd_loss(cfg, teacher_or_none)(draft, batch)
        total.backward()
        return total.detach(), count, draft.model.embed_tokens.weight.grad.clone()

    got, want = loss_and_grad(full_cfg, full_batch, teacher), loss_and_grad(cached_cfg, cached_batch, None)
    assert got[1] == want[1] == 3 * 8  # the last position of each block has no next token
    torch.testing.assert_close(got[0], want[0], rtol=1e-3, atol=1e-4)  # the cache holds float16 log-probs
    torch.testing.assert_close(got[2], want[2], rtol=1e-2, atol=1e-4)
    assert teacher.model.embed_tokens.weight.grad is None  # the teacher is not trained
