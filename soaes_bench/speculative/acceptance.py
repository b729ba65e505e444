"""Speculative-decoding math as pure functions: expected speedup, acceptance bookkeeping, the rejection rule.

Everything here takes numbers, lists or tensors and returns numbers or tensors; decode.py calls the rejection rule,
profile.py the bookkeeping and the Leviathan et al. (2023, "Fast Inference from Transformers via Speculative
Decoding", arXiv 2211.17192) formulas. Notation follows the paper: alpha is the probability that the target accepts
one draft token, gamma the number of draft tokens proposed per round, c the cost of one draft forward relative to
one target forward, tau the mean number of tokens emitted per target forward. From measured rounds, the paper's alpha
is estimated by token_acceptance_rate (not accepted/proposed, which is biased low for gamma > 1).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

# ---------------------------------------------------------------------------------------------------------------
# Expected values (Leviathan et al. 2023, eq. 1 and theorem 3.8)


def expected_accepted(alpha: float, gamma: int) -> float:
    """tau = E[tokens emitted per target forward] = (1 - alpha^(gamma+1)) / (1 - alpha); gamma + 1 at alpha = 1."""
    _check_alpha(alpha)
    if alpha >= 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def expected_speedup(alpha: float, gamma: int, c: float, verify_cost: float = 1.0) -> float:
    """Expected walltime improvement (1 - alpha^(gamma+1)) / ((1 - alpha)(gamma*c + 1)).

    `verify_cost` (default 1, the paper's assumption) is the cost of the gamma+1-token verification forward relative
    to a one-token target forward; on CPU it is measurably above 1 for gamma >= 4, so profile.py reports both.
    """
    if gamma < 0 or c < 0 or verify_cost <= 0:
        raise ValueError(f"need gamma >= 0, c >= 0, verify_cost > 0; got {gamma}, {c}, {verify_cost}")
    return expected_accepted(alpha, gamma) / (gamma * c + verify_cost)


def best_gamma(alpha: float, c: float, gammas: Iterable[int] = range(1, 17), verify_costs: dict | None = None) -> int:
    """The gamma with the highest expected speedup (ties go to the smaller gamma, the cheaper choice)."""
    verify_costs = verify_costs or {}
    return max(sorted(gammas), key=lambda g: (expected_speedup(alpha, g, c, verify_costs.get(g, 1.0)), -g))


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


# ---------------------------------------------------------------------------------------------------------------
# Bookkeeping from per-round records (proposed, accepted)


def _pairs(records) -> list[tuple[int, int]]:
    out = []
    for r in records:
        proposed, accepted = (r["proposed"], r["accepted"]) if isinstance(r, dict) else r
        if not 0 <= accepted <= proposed:
            raise ValueError(f"bad record: accepted {accepted} of proposed {proposed}")
        out.append((int(proposed), int(accepted)))
    return out


def acceptance_rate(records) -> float | None:
    """alpha = accepted / proposed over all rounds (None when nothing was proposed)."""
    pairs = _pairs(records)
    proposed = sum(p for p, _ in pairs)
    return sum(a for _, a in pairs) / proposed if proposed else None


def token_acceptance_rate(records) -> float | None:
    """Per-token acceptance probability: accepted / (accepted + rejections), rejections = rounds with accepted <
    proposed. This is the alpha of the paper's formulas. accepted / proposed (acceptance_rate) is smaller and falls
    with gamma, because draft tokens after the first rejection count as proposed but were never judged; each round is
    a geometric run cut off at gamma, whose maximum-likelihood rate is this ratio.
    """
    pairs = _pairs(records)
    accepted = sum(a for _, a in pairs)
    judged = accepted + sum(a < p for p, a in pairs)
    return accepted / judged if judged else None


def tokens_per_forward(records) -> float | None:
    """tau = mean tokens emitted per target forward: the accepted draft tokens plus the correction/bonus token."""
    pairs = _pairs(records)
    return sum(a + 1 for _, a in pairs) / len(pairs) if pairs else None


def acceptance_by_position(records, max_position: int | None = None, conditional: bool = False) -> list[float | None]:
    """Acceptance rate of draft position i = 1..max_position (None where no round had that position).

    Default: P(position i accepted | position i proposed), i.e. the share of rounds with gamma >= i whose first i
    draft tokens were all accepted (alpha^i under the paper's i.i.d. model). conditional=True gives
    P(position i accepted | positions 1..i-1 accepted), which the i.i.d. model says is constant (= alpha), so a
    falling curve shows the draft drifting from the target the further it runs ahead.
    """
    pairs = _pairs(records)
    top = max_position if max_position is not None else max((p for p, _ in pairs), default=0)
    reached = [0] * top
    accepted = [0] * top
    for p, a in pairs:
        for i in range(min(p, top)):  # 0-based index of draft position i + 1
            if conditional and i > a:
                break  # an earlier position was rejected: position i + 1 was never judged
            reached[i] += 1
            accepted[i] += i < a
    return [acc / n if n else None for acc, n in zip(accepted, reached)]


def summarize(records, max_position: int | None = None) -> dict:
    pairs = _pairs(records)
    return {
        "rounds": len(pairs),
        "proposed": sum(p for p, _ in pairs),
        "accepted": sum(a for _, a in pairs),
        "alpha": acceptance_rate(pairs),
        "alpha_token": token_acceptance_rate(pairs),
        "tau": tokens_per_forward(pairs),
        "acceptance_by_position": acceptance_by_position(pairs, max_position),
        "conditional_acceptance_by_position": acceptance_by_position(pairs, max_position, conditional=True),
    }


def greedy_agreement(target_logits: torch.Tensor, draft_logits: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Fraction of positions where draft and target argmax agree: the greedy acceptance rate at gamma = 1.

    Shapes (..., vocab); `mask` (...) selects the positions that count (e.g. the attention mask).
    """
    if target_logits.shape != draft_logits.shape:
        raise ValueError(f"logit shapes differ: {tuple(target_logits.shape)} vs {tuple(draft_logits.shape)}")
    agree = target_logits.argmax(-1) == draft_logits.argmax(-1)
    if mask is not None:
        mask = mask.bool()
        n = int(mask.sum())
        return float((agree & mask).sum()) / n if n else float("nan")
    return float(agree.float().mean())


# ---------------------------------------------------------------------------------------------------------------
# The rejection rule (Leviathan et al. 2023, algorithm 1; Chen et al. 2023 "modified rejection sampling")


def accept_prob(p: torch.Tensor, q: torch.Tensor, token: int | torch.Tensor) -> torch.Tensor:
    """min(1, p(x)/q(x)) for draft token x sampled from q; p, q are probability vectors (vocab,)."""
    px, qx = p[..., token], q[..., token]
    return torch.where(qx > 0, torch.clamp(px / qx, max=1.0), torch.ones_like(px))


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """normalise(max(0, p - q)): where to resample after a rejection. Falls back to p if p == q (never rejected)."""
    r = torch.clamp(p - q, min=0.0)
    total = r.sum(-1, keepdim=True)
    return torch.where(total > 0, r / torch.where(total > 0, total, torch.ones_like(total)), p)


def verify(p_rows: torch.Tensor, q_rows: torch.Tensor, draft_tokens: torch.Tensor, generator: torch.Generator | None = None
           ) -> tuple[int, int]:
    """Accept a prefix of the draft tokens and pick the next token so that the output is distributed as p.

    p_rows: (gamma+1, vocab) target probabilities at the gamma+1 positions; q_rows: (gamma, vocab) draft
    probabilities the draft tokens were sampled from; draft_tokens: (gamma,). Returns (n accepted, next token):
    the resampled token from residual(p_n, q_n) after the first rejection, or a bonus token from p_gamma when all
    gamma were accepted. One host sync per call.
    """
    gamma = draft_tokens.shape[0]
    if gamma:
        idx = torch.arange(gamma, device=p_rows.device)
        px = p_rows[idx, draft_tokens]
        qx = q_rows[idx, draft_tokens]
        u = torch.rand(gamma, generator=generator, device=p_rows.device)
        ok = u * qx < px  # u < p/q without dividing; q(x) > 0 because x was sampled from q
        n = int(torch.cumprod(ok.to(torch.int64), 0).sum())
    else:
        n = 0
    dist = residual(p_rows[n], q_rows[n]) if n < gamma else p_rows[gamma]
    return n, int(torch.multinomial(dist, 1, generator=generator))


def greedy_verify(target_tokens: Sequence[int], draft_tokens: Sequence[int]) -> tuple[int, int]:
    """Temperature 0: accept while the draft token equals the target argmax; the next token is the target's argmax
    at the first mismatch (or the bonus position). target_tokens has len(draft_tokens) + 1 entries."""
    n = 0
    while n < len(draft_tokens) and draft_tokens[n] == target_tokens[n]:
        n += 1
    return n, int(target_tokens[n])
