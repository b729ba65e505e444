"""Speculative-decoding math against hand computations, and the rejection rule checked statistically."""


import pytest
import torch
from scipy import stats

from soaes_bench.speculative import acceptance


# expected values ---------------------------------------------------------------------------------------------
def test_expected_speedup_hand_value():
    # alpha 0.5, gamma 2, c 0.1: tau = (1 - 0.125) / 0.5 = 1.75; cost = 2 * 0.1 + 1 = 1.2; speedup = 1.4583...
    assert acceptance.expected_accepted(0.5, 2) == pytest.approx(1.75)
    assert acceptance.expected_speedup(0.5, 2, 0.1) == pytest.approx(1.75 / 1.2)
    # alpha 0.8, gamma 3, c 0.05: tau = 1 + .8 + .64 + .512 = 2.952; cost 1.15
    assert acceptance.expected_speedup(0.8, 3, 0.05) == pytest.approx(2.952 / 1.15)
    # with a verification forward costing 1.5 target steps
    assert acceptance.expected_speedup(0.5, 2, 0.1, verify_cost=1.5) == pytest.approx(1.75 / 1.7)


def test_expected_speedup_limits():
    # alpha = 0: every round yields one token and pays gamma draft forwards
    assert acceptance.expected_accepted(0.0, 4) == 1.0
    assert acceptance.expected_speedup(0.0, 4, 0.25) == pytest.approx(1 / 2.0)
    # alpha = 1: gamma + 1 tokens per round, (gamma + 1) / (gamma c + 1), continuous with alpha -> 1
    assert acceptance.expected_accepted(1.0, 3) == 4.0
    assert acceptance.expected_speedup(1.0, 3, 0.1) == pytest.approx(4 / 1.3)
    assert acceptance.expected_speedup(1 - 1e-9, 3, 0.1) == pytest.approx(4 / 1.3, rel=1e-6)
    # free draft (c = 0) and gamma = 0 (plain decoding) reduce to tau and 1
    assert acceptance.expected_speedup(0.7, 2, 0.0) == pytest.approx(1 + 0.7 + 0.49)
    assert acceptance.expected_speedup(0.7, 0, 0.3) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        acceptance.expected_accepted(1.2, 2)


def test_best_gamma():
    # c = 0.1, alpha = 0.5 by hand: g=1 1.5/1.1=1.364, g=2 1.75/1.2=1.458, g=3 1.875/1.3=1.442 -> 2
    assert acceptance.best_gamma(0.5, 0.1, [1, 2, 3, 4]) == 2
    assert acceptance.best_gamma(0.0, 0.1, [1, 2, 3]) == 1  # nothing accepted: the cheapest round wins
    assert acceptance.best_gamma(1.0, 0.0, [1, 2, 8]) == 8
    # an expensive verification of long blocks pulls the best gamma down
    assert acceptance.best_gamma(0.9, 0.05, [2, 8], verify_costs={2: 1.0, 8: 3.0}) == 2


# bookkeeping -------------------------------------------------------------------------------------------------
RECORDS = [(3, 3), (3, 0), (3, 1), (2, 2), (3, 2)]  # (proposed, accepted) per round


def test_bookkeeping_hand_values():
    assert acceptance.acceptance_rate(RECORDS) == pytest.approx(8 / 14)
    assert acceptance.token_acceptance_rate(RECORDS) == pytest.approx(8 / (8 + 3))  # rounds 2, 3 and 5 had a rejection
    assert acceptance.tokens_per_forward(RECORDS) == pytest.approx((4 + 1 + 2 + 3 + 3) / 5)
    # position 1 proposed 5x, accepted in rounds 1,3,4,5; position 2 proposed 5x, accepted in rounds 1,4,5;
    # position 3 proposed 4x (round 4 had gamma 2), accepted in round 1
    assert acceptance.acceptance_by_position(RECORDS) == pytest.approx([4 / 5, 3 / 5, 1 / 4])
    # conditional: position 2 judged only where position 1 was accepted (4 rounds), position 3 where 1-2 were (2:
    # round 1 and round 5; round 4 proposed no third token)
    assert acceptance.acceptance_by_position(RECORDS, conditional=True) == pytest.approx([4 / 5, 3 / 4, 1 / 2])
    s = acceptance.summarize([{"proposed": p, "accepted": a} for p, a in RECORDS], max_position=4)
    assert (s["rounds"], s["proposed"], s["accepted"]) == (5, 14, 8)
    assert s["acceptance_by_position"][3] is None


def test_token_acceptance_rate_recovers_alpha():
    """Rounds simulated with i.i.d. acceptance 0.8: the per-token rate recovers 0.8 and predicts tau; accepted /
    proposed does not (draft tokens after a rejection were never judged)."""
    gen = torch.Generator().manual_seed(0)
    gamma, alpha = 8, 0.8
    ok = torch.rand(20000, gamma, generator=gen) < alpha
    n = torch.cumprod(ok.int(), 1).sum(1).tolist()
    records = [(gamma, a) for a in n]
    assert acceptance.token_acceptance_rate(records) == pytest.approx(alpha, abs=0.01)
    assert acceptance.tokens_per_forward(records) == pytest.approx(acceptance.expected_accepted(alpha, gamma), rel=0.02)
    assert acceptance.acceptance_rate(records) < 0.5


def test_bookkeeping_edge_cases():
    assert acceptance.acceptance_rate([]) is None and acceptance.tokens_per_forward([]) is None
    assert acceptance.token_acceptance_rate([(3, 3)]) == 1.0 and acceptance.token_acceptance_rate([(0, 0)]) is None
    assert acceptance.acceptance_rate([(0, 0)]) is None and acceptance.tokens_per_forward([(0, 0)]) == 1.0
    with pytest.raises(ValueError):
        acceptance.summarize([(2, 3)])


def test_greedy_agreement():
    t = torch.tensor([[[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]], [[0.0, 0.0, 1.0], [1.0, 2.0, 0.0]]])
    d = torch.tensor([[[0.0, 5.0, 1.0], [0.0, 1.0, 0.0]], [[0.0, 0.0, 9.0], [0.0, 3.0, 0.0]]])
    assert acceptance.greedy_agreement(t, d) == pytest.approx(3 / 4)
    assert acceptance.greedy_agreement(t, d, mask=torch.tensor([[1, 1], [0, 0]])) == pytest.approx(1 / 2)
    with pytest.raises(ValueError):
        acceptance.greedy_agreement(t, d[:, :1])


# the rejection rule ------------------------------------------------------------------------------------------
P = torch.tensor([0.5, 0.2, 0.2, 0.1, 0.0])
Q = torch.tensor([0.1, 0.1, 0.3, 0.2, 0.3])


def test_accept_prob_and_residual_values():
    assert acceptance.accept_prob(P, Q, 0).item() == 1.0
    assert acceptance.accept_prob(P, Q, 2).item() == pytest.approx(2 / 3)
    assert acceptance.accept_prob(P, Q, 4).item() == 0.0
    # max(0, p - q) = [.4, .1, 0, 0, 0] -> [.8, .2, 0, 0, 0]
    assert acceptance.residual(P, Q).tolist() == pytest.approx([0.8, 0.2, 0, 0, 0])
    assert acceptance.residual(P, P).tolist() == pytest.approx(P.tolist())


def _chi2_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    n = counts.sum().item()
    keep = probs > 0
    assert counts[~keep].sum() == 0, "sampled a token with zero target probability"
    return stats.chisquare(counts[keep].numpy(), (probs[keep] * n).numpy()).pvalue


def test_one_step_rejection_sampling_follows_p():
    g = torch.Generator().manual_seed(0)
    n = 20000
    x = torch.multinomial(Q, n, replacement=True, generator=g)
    u = torch.rand(n, generator=g)
    keep = u < acceptance.accept_prob(P, Q, x)
    resampled = torch.multinomial(acceptance.residual(P, Q), n, replacement=True, generator=g)
    out = torch.where(keep, x, resampled)
    counts = torch.bincount(out, minlength=5)
    assert _chi2_p(counts, P) > 1e-3
    # the test has power: the raw draft samples are rejected as coming from p
    assert _chi2_p(torch.bincount(x, minlength=5)[:4], P[:4] / P[:4].sum()) < 1e-6


@pytest.mark.parametrize("gamma", [1, 2, 3])
def test_verify_first_token_follows_p(gamma):
    gen = torch.Generator().manual_seed(gamma)
    p_rows = torch.softmax(torch.randn(gamma + 1, 5, generator=gen) * 1.5, -1)
    q_rows = torch.softmax(torch.randn(gamma, 5, generator=gen) * 1.5, -1)
    n_draws = 6000
    first, pos1_accepted = torch.zeros(5), 0
    for _ in range(n_draws):
        d = torch.stack([torch.multinomial(q, 1, generator=gen)[0] for q in q_rows])
        n, nxt = acceptance.verify(p_rows, q_rows, d, gen)
        first[d[0].item() if n >= 1 else nxt] += 1
        pos1_accepted += n >= 1
    assert _chi2_p(first, p_rows[0]) > 1e-3
    # position 1 is accepted with probability sum_x min(p, q) (Leviathan et al. 2023, corollary 3.6)
    beta = torch.minimum(p_rows[0], q_rows[0]).sum().item()
    assert pos1_accepted / n_draws == pytest.approx(beta, abs=0.025)


def test_verify_acceptance_rate_and_bonus():
    gen = torch.Generator().manual_seed(7)
    p_rows = torch.tensor([[0.6, 0.3, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4]])
    q_rows = torch.tensor([[0.2, 0.3, 0.5, 0.0]])
    beta = torch.minimum(p_rows[0], q_rows[0]).sum().item()  # 0.2 + 0.3 + 0.1 = 0.6
    n_draws, acc_count, bonus = 8000, 0, torch.zeros(4)
    for _ in range(n_draws):
        d = torch.multinomial(q_rows[0], 1, generator=gen)
        n, nxt = acceptance.verify(p_rows, q_rows, d, gen)
        acc_count += n
        if n == 1:
            bonus[nxt] += 1  # all accepted: the bonus token comes from the last target row
    assert acc_count / n_draws == pytest.approx(beta, abs=0.02)
    assert _chi2_p(bonus, p_rows[1]) > 1e-3
    # q == p: everything is accepted
    d = torch.tensor([1])
    assert acceptance.verify(p_rows, p_rows[:1], d, gen)[0] == 1


def test_greedy_verify():
    assert acceptance.greedy_verify([5, 6, 7, 8], [5, 6, 7]) == (3, 8)  # all accepted: bonus
    assert acceptance.greedy_verify([5, 9, 7, 8], [5, 6, 7]) == (1, 9)  # correction at the first mismatch
    assert acceptance.greedy_verify([4, 6], [5]) == (0, 4)
    assert acceptance.greedy_verify([3], []) == (0, 3)
