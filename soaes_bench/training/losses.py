"""Training losses as pure functions: causal-LM cross-entropy and logit-distillation divergences.

Shapes: B batch, T positions, V vocabulary, N selected token positions (rows), k teacher top-k, H hidden size.
Per-row functions return a [N] tensor; callers sum or average it, so token weighting is explicit.

References
- Hinton, Vinyals, Dean (2015), "Distilling the Knowledge in a Neural Network": soften both distributions with a
  temperature tau and multiply the loss by tau^2 so gradient magnitudes stay comparable across tau.
- Agarwal et al. (2024), "On-Policy Distillation of Language Models: Learning from Self-Generated Mistakes" (GKD),
  Eq. 1: generalized Jensen-Shannon divergence
      JSD_beta(P_T || P_S) = beta * KL(P_T || M) + (1 - beta) * KL(P_S || M),   M = beta * P_T + (1 - beta) * P_S.
- TRL `GKDTrainer.generalized_jsd_loss` convention, followed exactly: beta = 0 -> forward KL(P_T || P_S),
  beta = 1 -> reverse KL(P_S || P_T). These endpoints are the *normalised* limits JSD_beta / beta (beta -> 0) and
  JSD_beta / (1 - beta) (beta -> 1); the unnormalised JSD itself goes to 0 at both ends.
Temperature: both logits are divided by tau and the result is multiplied by tau^2, for every divergence kind
(including total variation, so mixing weights mean the same thing at every tau).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE = -100
KINDS = ("forward_kl", "reverse_kl", "jsd", "tv")
TOPK_MODES = ("tail", "renorm")
_LOG_FLOOR = -80.0  # log-prob floor for empty buckets (exp(-80) ~ 2e-35): avoids 0 * -inf = nan


# ---------------------------------------------------------------- cross-entropy
def next_token_rows(labels: torch.Tensor, ignore_index: int = IGNORE):
    """Rows for next-token prediction: position t predicts labels[t + 1] (labels aligned with input_ids, as in HF).

    labels [B, T] -> (mask [B, T] over *positions* whose next label counts, targets [N]).
    """
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != ignore_index
    targets = labels[:, 1:][labels[:, 1:] != ignore_index]
    return mask, targets


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE,
                   reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy. logits [B, T, V], labels [B, T] aligned with input_ids; -100 labels are skipped.

    reduction "mean": average over counted tokens (0 when none); "sum": total.
    The labels are shifted, not the logits: slicing [B, T, V] logits copies them, and its backward fills a second
    [B, T, V] buffer with zeros (a quarter of a draft-model step). The last position gets an ignored label instead;
    its gradient is exactly 0, so the weights trained are bit-for-bit the same.
    """
    target = F.pad(labels[:, 1:], (0, 1), value=ignore_index).reshape(-1)
    total = F.cross_entropy(logits.flatten(0, 1).float(), target, ignore_index=ignore_index, reduction="sum")
    if reduction == "sum":
        return total
    n = (target != ignore_index).sum()
    return total / n.clamp(min=1)


def token_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy: logits [N, V], targets [N] -> [N]."""
    return F.cross_entropy(logits.float(), targets, reduction="none")


# ---------------------------------------------------------------- divergences on log-probabilities
def divergence(s_logp: torch.Tensor, t_logp: torch.Tensor, kind: str, beta: float = 0.5) -> torch.Tensor:
    """Per-row divergence between teacher and student distributions given as log-probs [N, S] -> [N].

    kind: "forward_kl" KL(T || S) (mass-covering, Hinton KD), "reverse_kl" KL(S || T) (mode-seeking),
    "jsd" generalized JSD(beta) in the GKD/TRL convention (module docstring), "tv" total variation 0.5 * sum |T - S|.
    The teacher side carries no gradient only if the caller detaches it.
    """
    if kind == "forward_kl":
        return (t_logp.exp() * (t_logp - s_logp)).sum(-1)
    if kind == "reverse_kl":
        return (s_logp.exp() * (s_logp - t_logp)).sum(-1)
    if kind == "tv":
        return 0.5 * (t_logp.exp() - s_logp.exp()).abs().sum(-1)
    if kind != "jsd":
        raise ValueError(f"unknown divergence kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if beta == 0.0:
        return divergence(s_logp, t_logp, "forward_kl")
    if beta == 1.0:
        return divergence(s_logp, t_logp, "reverse_kl")
    m = torch.logsumexp(torch.stack([s_logp + math.log(1 - beta), t_logp + math.log(beta)]), dim=0)
    kl_t = (t_logp.exp() * (t_logp - m)).sum(-1)
    kl_s = (s_logp.exp() * (s_logp - m)).sum(-1)
    return beta * kl_t + (1 - beta) * kl_s


def soften(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """float32 logits / tau; at tau = 1 the logits themselves (dividing by 1 would copy [N, V] for nothing)."""
    x = logits.float()
    return x if float(temperature) == 1.0 else x / float(temperature)


def distill_rows(student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str = "forward_kl",
                 beta: float = 0.5, temperature: float = 1.0) -> torch.Tensor:
    """Full-vocabulary distillation loss per row: logits [N, V] each -> tau^2 * divergence [N]."""
    tau = float(temperature)
    s = F.log_softmax(soften(student_logits, tau), dim=-1)
    t = F.log_softmax(soften(teacher_logits, tau), dim=-1)
    return tau * tau * divergence(s, t, kind, beta)


# ---------------------------------------------------------------- top-k teacher (cached logits)
def teacher_topk(teacher_logits: torch.Tensor, k: int, temperature: float = 1.0):
    """What the cache stores: the teacher's top-k log-probs at temperature tau (normalised over the FULL
    vocabulary, so the tail mass 1 - sum(exp) is known) and their token ids. [N, V] -> ([N, k] float, [N, k] long).
    The top-k of the logits are those of the log-probs; only they are normalised, not all V of them."""
    x = soften(teacher_logits, temperature)
    values, indices = x.topk(k, dim=-1)
    return values - torch.logsumexp(x, dim=-1, keepdim=True), indices


def _log1mexp_sum(logp: torch.Tensor) -> torch.Tensor:
    """log(1 - sum(exp(logp))) over the last dim, floored (the tail bucket's log mass)."""
    covered = torch.logsumexp(logp, dim=-1).clamp(max=0.0)
    tail = torch.log((-torch.expm1(covered)).clamp(min=0.0))  # log(1 - exp(covered)); -inf when covered == 0
    return tail.clamp(min=_LOG_FLOOR)


class _TopkTail(torch.autograd.Function):
    """Student log-probs of the teacher's top-k ids and of the merged rest: x [N, V], ids [N, k] -> ([N, k], [N]).

    The plain autograd route (log_softmax, gather, scatter -inf, logsumexp over the rest) makes about ten [N, V]
    temporaries between forward and backward; this makes two, and a distilled step of the 1 x 128 draft (whose
    logits are 94x the size of its hidden states) runs 2.4x faster (benchmarks/bench_draft_losses.py). With q = softmax(x), Q = the rest's mass, G = sum of all incoming grads:
        d/dx_j = g_top_j - q_j G                (j in the top-k)
        d/dx_j = q_j (g_tail / Q - G)           (j in the rest)
    The tail is floored at _LOG_FLOOR (an empty rest when k covers V); a floored tail passes no gradient.
    tests/test_losses.py checks values and gradients against the plain route.
    """

    @staticmethod
    def forward(ctx, x, ids):
        m = x.amax(-1, keepdim=True)
        e = (x - m).exp_()  # softmax numerators, shifted by the row max
        z = e.sum(-1, keepdim=True)
        e_top = e.gather(-1, ids)
        e.scatter_(-1, ids, 0.0)  # e now holds the rest only
        z_rest = e.sum(-1, keepdim=True)
        log_z = z.log()
        s_top = x.gather(-1, ids) - m - log_z  # from x, not log(e_top): exact where e_top underflows
        s_tail = z_rest.log() - log_z
        live = s_tail > _LOG_FLOOR
        ctx.save_for_backward(e, ids, e_top, z, z_rest, live)
        return s_top, torch.where(live, s_tail, _LOG_FLOOR).squeeze(-1)

    @staticmethod
    def backward(ctx, g_top, g_tail):
        e, ids, e_top, z, z_rest, live = ctx.saved_tensors
        g_tail = torch.where(live, g_tail[:, None], 0.0)
        g_all = g_top.sum(-1, keepdim=True) + g_tail
        grad = e * (torch.where(live, g_tail / z_rest, 0.0) - g_all / z)
        grad.scatter_(-1, ids, g_top - e_top / z * g_all)
        return grad, None


def topk_tail_plain(x: torch.Tensor, ids: torch.Tensor):
    """What _TopkTail computes, by plain autograd (log_softmax, gather, logsumexp of the rest with a floor column):
    the reference its tests and benchmarks/bench_draft_losses.py compare it with."""
    s = F.log_softmax(x, -1)
    rest = s.scatter(-1, ids, float("-inf"))
    floor = s.new_full((s.size(0), 1), _LOG_FLOOR)
    return s.gather(-1, ids), torch.logsumexp(torch.cat([rest, floor], -1), -1)


def topk_distributions(student_logits: torch.Tensor, t_values: torch.Tensor, t_indices: torch.Tensor,
                       temperature: float = 1.0, mode: str = "tail", fused: bool = True):
    """Student and teacher log-probs on the support the cached top-k allows.

    mode "tail": support = the k teacher ids plus one "everything else" bucket. Both distributions stay exact
      (the student's tail is the sum of its remaining probability), so with k = V this equals the full loss.
      Merging the tail is a lower bound on every divergence (data-processing inequality). Forward KL and TV weight
      the tail by the teacher's tail mass, so they converge to the full loss as the top-k covers the teacher's
      mass; reverse KL and JSD also need the student's tail to be small (true once it imitates the teacher). Default.
    mode "renorm": support = the k ids only; both distributions are renormalised over them (as TRL's `top_k`).
      Equal to the full loss when k = V; biased when the teacher's tail is heavy.
    Returns (s_logp, t_logp) of shape [N, k + 1] ("tail") or [N, k] ("renorm"). fused=False: the student's tail
    by topk_tail_plain (for comparisons).
    """
    x = soften(student_logits, temperature)
    if mode == "renorm":
        return F.log_softmax(x.gather(-1, t_indices), dim=-1), F.log_softmax(t_values.float(), dim=-1)
    if mode != "tail":
        raise ValueError(f"unknown top-k mode {mode!r}; choose one of {', '.join(TOPK_MODES)}")
    s_top, s_tail = (_TopkTail.apply if fused else topk_tail_plain)(x, t_indices)
    t_tail = _log1mexp_sum(t_values.float())
    s = torch.cat([s_top, s_tail[:, None]], dim=-1)
    t = torch.cat([t_values.float(), t_tail[:, None]], dim=-1)
    return s, t


def topk_distill_rows(student_logits: torch.Tensor, t_values: torch.Tensor, t_indices: torch.Tensor,
                      kind: str = "forward_kl", beta: float = 0.5, temperature: float = 1.0,
                      mode: str = "tail") -> torch.Tensor:
    """Distillation loss per row against a cached top-k teacher: [N, V], [N, k], [N, k] -> tau^2 * div [N].
    `t_values` must come from `teacher_topk` at the same temperature."""
    s, t = topk_distributions(student_logits, t_values, t_indices, temperature, mode)
    tau = float(temperature)
    return tau * tau * divergence(s, t, kind, beta)


# ---------------------------------------------------------------- chunking over positions
def chunked_rows_sum(hidden: torch.Tensor, weight: torch.Tensor, row_fn, *row_args: torch.Tensor,
                     chunk_size: int = 1024) -> torch.Tensor:
    """sum_i row_fn(hidden_i @ weight.T, *row_args_i) computed `chunk_size` rows at a time.

    hidden [N, H] (final hidden states of the selected positions), weight [V, H] (the LM head), row_args each [N, ...].
    weight None: `hidden` already holds logits [N, V]; chunking then bounds only the loss's own intermediates
    (log-softmaxes, mixtures), which are several times the size of the logits.
    Each chunk runs under activation checkpointing, so its [chunk, V] logits (and the log-softmaxes the loss
    builds from them) are freed after the forward and recomputed in the backward: peak memory grows with
    chunk_size x V, not N x V. Values and gradients equal the unchunked computation. Given logits that fit in one
    chunk are not recomputed: that would cost a second forward and free nothing.
    """
    from torch.utils.checkpoint import checkpoint

    def one(h, w, *args):
        return row_fn(h if w is None else h @ w.t(), *args).sum()

    if weight is None and hidden.size(0) <= chunk_size:  # one chunk of logits: recomputing it would save nothing
        return one(hidden, None, *row_args)
    total = hidden.new_zeros((), dtype=torch.float32)
    for i in range(0, hidden.size(0), chunk_size):
        sl = slice(i, i + chunk_size)
        args = [a[sl] for a in row_args]
        if torch.is_grad_enabled() and (hidden.requires_grad or (weight is not None and weight.requires_grad)):
            total = total + checkpoint(one, hidden[sl], weight, *args, use_reentrant=False)
        else:
            total = total + one(hidden[sl], weight, *args)
    return total
