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
    """
    shifted = logits[:, :-1].reshape(-1, logits.size(-1)).float()
    target = labels[:, 1:].reshape(-1)
    total = F.cross_entropy(shifted, target, ignore_index=ignore_index, reduction="sum")
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


def distill_rows(student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str = "forward_kl",
                 beta: float = 0.5, temperature: float = 1.0) -> torch.Tensor:
    """Full-vocabulary distillation loss per row: logits [N, V] each -> tau^2 * divergence [N]."""
    tau = float(temperature)
    s = F.log_softmax(student_logits.float() / tau, dim=-1)
    t = F.log_softmax(teacher_logits.float() / tau, dim=-1)
    return tau * tau * divergence(s, t, kind, beta)


# ---------------------------------------------------------------- top-k teacher (cached logits)
def teacher_topk(teacher_logits: torch.Tensor, k: int, temperature: float = 1.0):
    """What the cache stores: the teacher's top-k log-probs at temperature tau (normalised over the FULL
    vocabulary, so the tail mass 1 - sum(exp) is known) and their token ids. [N, V] -> ([N, k] float, [N, k] long)."""
    logp = F.log_softmax(teacher_logits.float() / float(temperature), dim=-1)
    values, indices = logp.topk(k, dim=-1)
    return values, indices


def _log1mexp_sum(logp: torch.Tensor) -> torch.Tensor:
    """log(1 - sum(exp(logp))) over the last dim, floored (the tail bucket's log mass)."""
    covered = torch.logsumexp(logp, dim=-1).clamp(max=0.0)
    tail = torch.log((-torch.expm1(covered)).clamp(min=0.0))  # log(1 - exp(covered)); -inf when covered == 0
    return tail.clamp(min=_LOG_FLOOR)


def topk_distributions(student_logits: torch.Tensor, t_values: torch.Tensor, t_indices: torch.Tensor,
                       temperature: float = 1.0, mode: str = "tail"):
    """Student and teacher log-probs on the support the cached top-k allows.

    mode "tail": support = the k teacher ids plus one "everything else" bucket. Both distributions stay exact
      (the student's tail is the sum of its remaining probability), so with k = V this equals the full loss.
      Merging the tail is a lower bound on every divergence (data-processing inequality). Forward KL and TV weight
      the tail by the teacher's tail mass, so they converge to the full loss as the top-k covers the teacher's
      mass; reverse KL and JSD also need the student's tail to be small (true once it imitates the teacher). Default.
    mode "renorm": support = the k ids only; both distributions are renormalised over them (as TRL's `top_k`).
      Equal to the full loss when k = V; biased when the teacher's tail is heavy.
    Returns (s_logp, t_logp) of shape [N, k + 1] ("tail") or [N, k] ("renorm").
    """
    tau = float(temperature)
    if mode == "renorm":
        s = F.log_softmax(student_logits.float().gather(-1, t_indices) / tau, dim=-1)
        t = F.log_softmax(t_values.float(), dim=-1)
        return s, t
    if mode != "tail":
        raise ValueError(f"unknown top-k mode {mode!r}; choose one of {', '.join(TOPK_MODES)}")
    s_full = F.log_softmax(student_logits.float() / tau, dim=-1)
    s_top = s_full.gather(-1, t_indices)
    s_rest = s_full.scatter(-1, t_indices, float("-inf"))
    # a constant floor column keeps logsumexp finite (and its gradient defined) when the top-k covers all of V
    floor = s_full.new_full((s_full.size(0), 1), _LOG_FLOOR)
    s_tail = torch.logsumexp(torch.cat([s_rest, floor], dim=-1), dim=-1)
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
