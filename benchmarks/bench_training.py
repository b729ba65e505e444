"""Training benchmarks: the one loop against a bare torch loop, distillation-loss peak memory, pipeline phase times.

    .venv/bin/python benchmarks/bench_training.py                 # (a) + (b) at the reference shapes, a few minutes
    .venv/bin/python benchmarks/bench_training.py --model micro --seq-len 64 --mem-batch 2 --mem-seq 128  # smoke
    .venv/bin/python benchmarks/bench_training.py --skip-memory --steps 10 --repeats 10      # tighter loop ratio
    .venv/bin/python benchmarks/bench_training.py --pipeline training/recipes/reference.yaml --output runs/bench_ref

(a) Loop throughput. The project loop (soaes_bench.training.loop.train: accelerate, deterministic data stream,
    collate, token counting, lr schedule, grad clip, logging, reductions) against a bare torch loop on the same model,
    the same initial weights, the same batches (the stream the project loop reads, pre-collated for the bare loop)
    and the same maths (AdamW with the same decay groups, the same lr schedule, grad clip, next-token CE), so the
    final losses must agree and the only difference is the loop's overhead. Runs alternate (bare, project, project,
    bare, ...) so machine-load drift hits both. Reported: tokens/s over the training steps (the loop's own timer,
    from its first step to its last), and end-to-end (wall time of the train() call, including accelerate setup and
    the final checkpoint of model + AdamW state, which the bare loop does not write). Ratio = project / bare; the
    goal is >= 0.9. Median over repeats, min-max, and the order-statistic CI of the median per-pair ratio at its
    real level (ci_text: 6 repeats, the default, give [min, max] at 96.9%; 4 only 87.5%).
(b) Distillation-loss peak memory. Each variant runs forward + backward in a FRESH subprocess (1 thread) on random
    student final hidden states [N = batch x seq, H], an LM head [V, H] and a teacher (full logits [N, V] for the
    full-vocabulary losses, cached top-k [N, k] for the top-k ones). Measure: the kernel's peak resident set size
    (VmHWM) after resetting it (`echo 5 > /proc/self/clear_refs`) once the inputs exist, minus the resident size at
    that moment: the extra memory the loss needs, as the OS sees it (torch's CPU allocator gives large blocks back to
    the OS, so RSS tracks live tensors; tracemalloc does not see torch). Printed both without and with the teacher's
    input (full logits vs top-k cache) and as naive / variant ratios; also the seconds and the loss values (naive and
    chunked must agree exactly; top-k is the documented approximation).
(c) --pipeline RECIPE: runs `soaes-bench pipeline` in this process and prints each phase's time (the pipeline writes
    <output>/timings.json: base evaluation, and per phase its training and its evaluation + gate).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPEATS = 6  # the fewest repeats whose [min, max] is a >= 95% interval for the median (96.9%)
MEM_VARIANTS = {
    "naive": "full vocabulary, student and teacher logits [N, V] at once (losses.distill_rows)",
    "chunked": "full vocabulary, chunked_rows_sum over positions with the LM head (student logits never whole)",
    "topk": "cached teacher top-k (tail bucket), student logits [N, V] at once (losses.topk_distill_rows)",
    "topk_chunked": "cached top-k + chunked_rows_sum with the LM head",
    "distill_py": "what distill.py does: model logits [N, V], then top-k loss chunked over positions",
}


# ---------------------------------------------------------------- statistics
def median_interval(values: list[float], level: float = 0.95) -> dict:
    """Median of repeated timings or per-repeat ratios with the profiles' CI (soaes_bench.stats.median_ci: a pair of
    order statistics, its real coverage under "level"; one value: the interval is that value, level None)."""
    from soaes_bench.stats import median_ci

    m = median_ci(values, level)
    if m["ci"] is None and m["median"] is not None:
        m["ci"] = [m["median"], m["median"]]
    return m


def ci_text(values: list[float], spec: str = ".2f") -> str:
    """The median and its interval, labelled with the level it has: "1.86  75% CI [1.82, 1.95] (median of n=3:
    min-max)"."""
    from soaes_bench.stats import level_label

    m = median_interval(values)
    if m["level"] is None:
        return f"{m['median']:{spec}}  (n={m['n']}: no CI)"
    lo, hi = m["ci"]
    how = "min-max" if (lo, hi) == (min(m["values"]), max(m["values"])) else "order statistics"
    return (f"{m['median']:{spec}}  {level_label(m['level'])} CI [{lo:{spec}}, {hi:{spec}}] "
            f"(median of n={m['n']}: {how})")


def machine() -> str:
    """The CPU this ran on, as a benchmark header names it: model name (from /proc/cpuinfo), cores, torch threads."""
    from soaes_bench.records.provenance import cpu_name

    return f"CPU {cpu_name()}, {os.cpu_count()} logical cores"


def side_by_side_main(argv, description: str, bench, recipe_help: str, steps: int, repeats: int) -> int:
    """The command line the recipe-driven A/B benchmarks share: --recipe, --steps, --repeats, --threads, --json."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--recipe", default="training/recipes/reference.yaml", help=recipe_help)
    p.add_argument("--steps", type=int, default=steps, help="optimizer steps per run")
    p.add_argument("--repeats", type=int, default=repeats, help="runs of each variant")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", default=None, help="also write all numbers here")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.threads is None:
        import torch

        a.threads = torch.get_num_threads()
    results = bench(a)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return 0


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):,.1f} (min {min(values):,.1f}, max {max(values):,.1f})"


# ---------------------------------------------------------------- (a) loop throughput
class _Tok:
    """Just what model.build_config reads from a tokenizer (no tokenizer files needed)."""

    def __init__(self, vocab: int):
        self.vocab, self.eos_token_id, self.pad_token_id, self.bos_token_id = vocab, 0, 0, 0

    def __len__(self):
        return self.vocab


def _bare_loop(model, batches, targs, total_steps):
    """forward / CE / backward / clip / AdamW step, nothing else. Returns (steps seconds, last loss, setup seconds)."""
    import torch
    import torch.nn.functional as F

    from soaes_bench.training.loop import lr_at

    t_setup = time.perf_counter()
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": targs.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=targs.lr, betas=(targs.beta1, targs.beta2), eps=1e-8)
    setup = time.perf_counter() - t_setup
    t0 = time.perf_counter()
    loss = None
    for step, ids in enumerate(batches):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total_steps, targs.lr, targs.warmup_steps, targs.min_lr_ratio)
        logits = model(input_ids=ids, use_cache=False).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), ids[:, 1:].reshape(-1))
        del logits  # as lean as it gets: the [B, T, V] logits do not outlive the step
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), targs.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0, float(loss.detach()), setup


def bench_loop(a) -> dict:
    import torch

    from soaes_bench.training import data
    from soaes_bench.training.loop import TrainArgs, stream_indices, train
    from soaes_bench.models import new_model, n_params

    torch.set_num_threads(a.threads)
    tok = _Tok(a.vocab)
    init = new_model(a.model, tok, seed=1, max_position=max(2048, a.seq_len))
    n_blocks = a.batch * a.steps
    blocks = torch.randint(1, a.vocab, (n_blocks, a.seq_len), generator=torch.Generator().manual_seed(0))
    targs = TrainArgs(batch_size=a.batch, micro_batch=a.batch, lr=1e-3, warmup_steps=1, max_steps=a.steps,
                      checkpoint_every=10**9, log_every=10**9, grad_clip=1.0, seed=3)
    # the exact batches the project loop reads (its seeded stream), pre-collated for the bare loop
    batches = [blocks[stream_indices(s * a.batch, a.batch, n_blocks, targs.seed)] for s in range(a.steps)]
    tokens = a.steps * a.batch * a.seq_len
    print(f"(a) loop throughput: model {a.model} ({n_params(init) / 1e6:.1f}M params), batch {a.batch} x seq "
          f"{a.seq_len}, {a.steps} steps ({tokens:,} tokens) per run, {a.repeats} repeats, "
          f"{torch.get_num_threads()} thread(s); {machine()}", flush=True)

    def run_bare():
        steps_s, loss, setup = _bare_loop(copy.deepcopy(init), batches, targs, a.steps)
        return tokens / steps_s, tokens / (steps_s + setup), loss

    def run_project(tmp):
        model = copy.deepcopy(init)
        t0 = time.perf_counter()
        res = train(model, data.Blocks(blocks), data.collate_blocks, targs, tmp, resume=False, desc="bench")
        wall = time.perf_counter() - t0
        row = [r for r in res.log if "loss" in r][-1]  # written after the last step, with the loop's own timer
        return row["tokens"] / row["elapsed_s"], tokens / wall, res.last_loss

    with tempfile.TemporaryDirectory() as tmp:
        _bare_loop(copy.deepcopy(init), batches[:1], targs, a.steps)  # warm-up: allocator, kernels, imports
        run_project(Path(tmp) / "warm")
        rows = {"bare": [], "project": []}
        for r in range(a.repeats):
            order = ("bare", "project") if r % 2 == 0 else ("project", "bare")
            for who in order:
                rows[who].append(run_bare() if who == "bare" else run_project(Path(tmp) / f"p{r}"))
            b, p = rows["bare"][-1], rows["project"][-1]
            print(f"  repeat {r + 1}: bare {b[0]:,.0f} tok/s, project {p[0]:,.0f} tok/s (ratio {p[0] / b[0]:.3f}); "
                  f"end-to-end {b[1]:,.0f} vs {p[1]:,.0f}", flush=True)
    out = {}
    for i, label in ((0, "steps"), (1, "end_to_end")):
        bare = [x[i] for x in rows["bare"]]
        proj = [x[i] for x in rows["project"]]
        ratios = [p / b for p, b in zip(proj, bare)]
        m = median_interval(ratios)
        out[label] = {"bare_tok_s": bare, "project_tok_s": proj, "ratios": ratios,
                      "ratio_median": statistics.median(ratios), "ratio_ci": m["ci"], "ratio_ci_level": m["level"]}
    loss_gap = max(abs(p[2] - b[2]) for p, b in zip(rows["project"], rows["bare"]))
    s, e = out["steps"], out["end_to_end"]
    print(f"  bare loop    tokens/s: {summary(s['bare_tok_s'])}")
    print(f"  project loop tokens/s: {summary(s['project_tok_s'])}")
    print(f"  RATIO project/bare (training steps): {ci_text(s['ratios'], '.3f')}  min-max [{min(s['ratios']):.3f}, "
          f"{max(s['ratios']):.3f}]  (goal >= 0.9: {'met' if s['ratio_median'] >= 0.9 else 'NOT met'})")
    print(f"  ratio project/bare (end to end, incl. setup + final checkpoint): {ci_text(e['ratios'], '.3f')}")
    print(f"  same maths check: max |final loss project - bare| = {loss_gap:.2e}")
    out["loss_gap"] = loss_gap
    return out


# ---------------------------------------------------------------- (b) distillation-loss memory (worker side)
def _status_kb(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+)\s+kB", text, re.M).group(1))


def mem_worker(a) -> dict:
    """Runs in a fresh process: build inputs, reset the peak RSS, run one variant forward + backward."""
    import gc

    import torch

    from soaes_bench.training import losses

    torch.set_num_threads(1)
    n, v, h, k = a.mem_batch * a.mem_seq, a.vocab, a.hidden, a.top_k
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, h, generator=g).requires_grad_()
    head = (torch.randn(v, h, generator=g) * 0.05).requires_grad_()
    teacher_head = torch.randn(v, h, generator=g) * 0.05
    teacher_hidden = torch.randn(n, h, generator=g) * 3
    full = a.mem_worker in ("naive", "chunked")
    if full:
        t_logits = teacher_hidden @ teacher_head.t()
        teacher_bytes = t_logits.numel() * t_logits.element_size()
    else:  # the cache: top-k at temperature 1 over the full vocabulary, built in slices (as teacher_cache does)
        parts = [losses.teacher_topk(teacher_hidden[i:i + a.chunk] @ teacher_head.t(), k) for i in range(0, n, a.chunk)]
        tv = torch.cat([p[0] for p in parts]).half().float()  # stored float16, collated to float32
        ti = torch.cat([p[1] for p in parts]).to(torch.int16).long()
        del parts
        teacher_bytes = tv.numel() * tv.element_size() + ti.numel() * ti.element_size()
    del teacher_hidden, teacher_head
    kd = lambda s, t: losses.distill_rows(s, t, "forward_kl")  # noqa: E731
    topk = lambda s, v_, i_: losses.topk_distill_rows(s, v_, i_, "forward_kl")  # noqa: E731
    teacher = (t_logits,) if full else (tv, ti)

    def run(rows: slice):
        x, t = hidden[rows], [z[rows] for z in teacher]
        if a.mem_worker == "naive":
            return kd(x @ head.t(), *t).sum()
        if a.mem_worker == "chunked":
            return losses.chunked_rows_sum(x, head, kd, *t, chunk_size=a.chunk)
        if a.mem_worker == "topk":
            return topk(x @ head.t(), *t).sum()
        if a.mem_worker == "topk_chunked":
            return losses.chunked_rows_sum(x, head, topk, *t, chunk_size=a.chunk)
        return losses.chunked_rows_sum(x @ head.t(), None, topk, *t, chunk_size=a.chunk)  # distill_py

    run(slice(0, 4)).backward()  # warm-up: lazy imports (torch.utils.checkpoint) and kernels, not the loss's memory
    hidden.grad = head.grad = None
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
    base_kb = _status_kb("VmRSS")
    t0 = time.perf_counter()
    loss = run(slice(None))
    loss.backward()
    seconds = time.perf_counter() - t0
    peak_kb = _status_kb("VmHWM")
    return {"variant": a.mem_worker, "peak_bytes": (peak_kb - base_kb) * 1024, "teacher_bytes": teacher_bytes,
            "seconds": seconds, "loss": float(loss) / n, "grad_norm": float(hidden.grad.norm())}


def bench_memory(a) -> dict:
    if not Path("/proc/self/clear_refs").exists():
        raise SystemExit("(b) needs Linux /proc/self/clear_refs to reset the peak RSS")
    n = a.mem_batch * a.mem_seq
    print(f"\n(b) distillation loss peak memory: batch {a.mem_batch} x seq {a.mem_seq} = {n:,} positions, vocab "
          f"{a.vocab:,}, hidden {a.hidden}, top-k {a.top_k}, chunk {a.chunk}; forward KL; fresh process per run, "
          f"{a.mem_repeats} repeat(s); [N, V] float32 = {n * a.vocab * 4 / 2**20:,.0f} MiB", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res: dict[str, list[dict]] = {v: [] for v in MEM_VARIANTS}
    for r in range(a.mem_repeats):
        for variant in MEM_VARIANTS:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--mem-worker", variant, "--mem-batch",
                   str(a.mem_batch), "--mem-seq", str(a.mem_seq), "--vocab", str(a.vocab), "--hidden",
                   str(a.hidden), "--top-k", str(a.top_k), "--chunk", str(a.chunk)]
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if p.returncode != 0:
                raise SystemExit(f"memory worker {variant} failed:\n{p.stderr[-2000:]}")
            res[variant].append(json.loads(p.stdout.strip().splitlines()[-1]))
    mib = lambda b: b / 2**20  # noqa: E731
    med = {v: statistics.median(x["peak_bytes"] for x in rows) for v, rows in res.items()}
    tot = {v: med[v] + res[v][0]["teacher_bytes"] for v in res}
    print(f"  {'variant':<13} {'peak MiB (min-max)':>22} {'+teacher in':>12} {'seconds':>8} {'loss/pos':>10}  what")
    for v, rows in res.items():
        peaks = [mib(x["peak_bytes"]) for x in rows]
        print(f"  {v:<13} {mib(med[v]):>9,.1f} ({min(peaks):,.0f}-{max(peaks):,.0f}) {mib(tot[v]):>12,.1f} "
              f"{statistics.median(x['seconds'] for x in rows):>8.2f} {rows[0]['loss']:>10.5f}  {MEM_VARIANTS[v]}")
    print("  RATIOS naive / variant (loss working memory; with the teacher's input in brackets):")
    for v in MEM_VARIANTS:
        if v != "naive":
            print(f"    naive/{v}: {med['naive'] / max(med[v], 1):.2f}x  ({tot['naive'] / max(tot[v], 1):.2f}x)")
    gap = abs(res["naive"][0]["loss"] - res["chunked"][0]["loss"])
    gap_k = max(abs(res["topk"][0]["loss"] - res[v][0]["loss"]) for v in ("topk_chunked", "distill_py"))
    print(f"  same loss check: |naive - chunked| = {gap:.2e}; top-k variants agree within {gap_k:.2e}; "
          f"top-k vs full: {res['topk'][0]['loss'] - res['naive'][0]['loss']:+.2e} (tail-bucket lower bound)")
    return {"runs": res, "median_peak_bytes": med, "with_teacher_bytes": tot}


# ---------------------------------------------------------------- (c) pipeline phases
def bench_pipeline(a) -> dict:
    from soaes_bench.pipeline import run_pipeline

    out = Path(a.output or tempfile.mkdtemp(prefix="bench_pipeline_"))
    print(f"(c) pipeline {a.pipeline} -> {out}", flush=True)
    t0 = time.perf_counter()
    code = run_pipeline(a.pipeline, out, resume=a.resume)
    total = time.perf_counter() - t0
    timings = json.loads((out / "timings.json").read_text()) if (out / "timings.json").is_file() else {}
    print(f"  exit code {code}; total {total / 60:.1f} min ({total:.0f} s)")
    if "base_eval_s" in timings:
        print(f"  base evaluation: {timings['base_eval_s']:.0f} s")
    for phase, t in timings.items():
        if isinstance(t, dict):
            print(f"  {phase:<8} train {t.get('train_s', 0):>7.0f} s   eval+gate {t.get('eval_gate_s', 0):>6.0f} s")
    return {"exit_code": code, "total_s": total, "timings": timings}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="target", help="model size for (a): target, draft, draft2, micro")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch", type=int, default=4, help="sequences per step for (a)")
    p.add_argument("--steps", type=int, default=5, help="optimizer steps per run for (a)")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                   help="runs of each loop for (a) (6: the ratio's [min, max] is a 96.9%% CI of its median)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for (a) (default: torch's)")
    p.add_argument("--vocab", type=int, default=12000)
    p.add_argument("--mem-batch", type=int, default=8)
    p.add_argument("--mem-seq", type=int, default=512)
    p.add_argument("--hidden", type=int, default=384, help="student hidden size for (b)")
    p.add_argument("--top-k", type=int, default=32)
    p.add_argument("--chunk", type=int, default=1024, help="positions per chunk for (b)")
    p.add_argument("--mem-repeats", type=int, default=2)
    p.add_argument("--skip-loop", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--pipeline", default=None, help="recipe: run (c) only")
    p.add_argument("--output", default=None, help="(c) output dir (default: a temp dir)")
    p.add_argument("--resume", action="store_true", help="(c) continue an earlier run in --output")
    p.add_argument("--json", default=None, help="also write all numbers here")
    p.add_argument("--mem-worker", default=None, choices=list(MEM_VARIANTS), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.mem_worker:
        print(json.dumps(mem_worker(a)))
        return 0
    if a.threads is None:
        import torch

        a.threads = torch.get_num_threads()
    results = {}
    if a.pipeline:
        results["pipeline"] = bench_pipeline(a)
    else:
        if not a.skip_loop:
            results["loop"] = bench_loop(a)
        if not a.skip_memory:
            results["memory"] = bench_memory(a)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
