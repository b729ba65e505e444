"""Time soaes_bench.metrics.chinese against the naive way of scoring Chinese generations, on equal work.

    .venv/bin/python benchmarks/bench_metrics.py --pairs 1500 --repeats 10   # reports/benchmarks/bench_metrics.txt
    .venv/bin/python benchmarks/bench_metrics.py                               # 10k pairs, 6 repeats (minutes)

Both sides produce the same outputs: ROUGE-1/2/L F1 of every pair and one corpus BLEU-4, and the benchmark fails
unless they agree (every pair and metric, and BLEU, within 1e-9). Naive = per pair
rouge_scorer.RougeScorer(["rouge1","rouge2","rougeL"], tokenizer=JiebaTok()).score(ref, pred), then one
sacrebleu.corpus_bleu(preds, [refs], tokenize="zh"). Ours = chinese.rouge_per_pair(preds, refs) and
chinese.bleu4(preds, refs) (chinese.score averages those rows). (An earlier version also computed a sentence BLEU
per pair on the naive side and threw it away, which inflated the ratio.) Pairs are built deterministically from the
clauses of the repo's generation answers (tasks/*/data/*.jsonl rows with a string `answer`) when there are 200+,
else from a fixed SOAE vocabulary; references are 1-4 random clauses (so nearly all distinct: no cache advantage);
predictions are perturbed references (clauses dropped, swapped, replaced, truncated, some empty).
sacrebleu's tokenizer LRU caches and ours are cleared before every timed run so repeats do not flatter either side;
the two sides alternate (naive, ours, ours, naive, ...) so load drift hits both. Printed: median CPU seconds
(time.process_time) of each, and the median of the per-repeat ratios naive / ours with the order-statistic CI of
that median (soaes_bench.stats.median_ci) at its real level; the header names the CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import statistics
import sys
import time
import unicodedata
from pathlib import Path

import jieba
import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.tokenizers.tokenizer_re import TokenizerRegexp
from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

from soaes_bench.metrics import chinese

ROOT = Path(__file__).resolve().parents[1]

SUBJECTS = ["国务院国有资产监督管理机构", "国家出资企业", "履行出资人职责的机构", "国有独资公司", "企业管理者",
            "地方人民政府", "审计机关", "董事会", "监事会", "国有资本投资公司", "职工代表大会", "财政部门"]
VERBS = ["依法履行", "负责监督", "应当建立健全", "不得擅自", "有权决定", "应当及时报告", "按照规定落实",
         "统一组织", "定期公布", "依照法律规定参与"]
OBJECTS = ["出资人职责", "国有资产保值增值", "内部监督管理和风险控制制度", "重大事项", "企业改制方案",
           "国有资产转让", "财务会计制度", "关联交易", "利润分配方案", "资产评估结果", "薪酬管理办法",
           "混合所有制改革", "境外投资项目", "国有资本经营预算"]
TAILS = ["防止国有资产流失", "维护国有资产权益", "促进国有经济发展", "提高国有资本运营效率", "保障职工合法权益",
         "并接受社会公众监督", "GDP增长目标为5%", "自2024年1月1日起施行"]
LAWS = ["《中华人民共和国企业国有资产法》", "《企业国有资产监督管理暂行条例》", "《中华人民共和国公司法》"]


def _clause(rng: random.Random) -> str:
    return rng.choice(SUBJECTS) + rng.choice(VERBS) + rng.choice(OBJECTS)


def _generated_clauses(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        c = _clause(rng)
        r = rng.random()
        if r < 0.2:
            c = f"根据{rng.choice(LAWS)}第{rng.randint(1, 80)}条，" + c
        elif r < 0.5:
            c += "，" + rng.choice(TAILS)
        out.append(c)
    return out


def _repo_clauses() -> list[str]:
    """Clauses of the reference answers of the repo's generation sets (rows with a string `answer`)."""
    clauses = []
    for path in sorted(ROOT.glob("tasks/*/data/*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            answer = json.loads(line).get("answer") if line.strip() else None
            if isinstance(answer, str):
                clauses += [c.strip() for c in re.split(r"[。；！？\n]", answer) if len(c.strip()) >= 4]
    return clauses


def _perturb(rng: random.Random, ref: str) -> str:
    clauses = [c for c in re.split(r"[，。；]", ref) if c]
    r = rng.random()
    if r < 0.05:
        return ""
    if r < 0.15:
        return ref
    if r < 0.30:
        return ref[: rng.randint(1, max(1, len(ref) - 1))]  # truncated generation
    if r < 0.45:
        return "，".join(_clause(rng) for _ in range(rng.randint(1, 3))) + "。"  # on topic, wrong content
    out = [c for c in clauses if rng.random() > 0.3] or clauses[:1]
    if len(out) > 1 and rng.random() < 0.5:
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    if rng.random() < 0.5:
        out.insert(rng.randint(0, len(out)), _clause(rng))
    return "，".join(out) + "。"


def make_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str], str]:
    """n (prediction, reference) pairs; references are 1-4 random clauses, so nearly all are distinct."""
    rng = random.Random(seed)
    pool, source = _repo_clauses(), "answer clauses in tasks/*/data/*.jsonl"
    if len(pool) < 200:
        pool, source = _generated_clauses(rng, 2000), "a fixed SOAE vocabulary"
    refs = ["，".join(rng.choice(pool) for _ in range(rng.randint(1, 4))) + "。" for _ in range(n)]
    preds = [_perturb(rng, r) for r in refs]
    return preds, refs, source


class JiebaTok:
    """The obvious rouge-score tokenizer: jieba per call, punctuation/whitespace tokens dropped."""

    def tokenize(self, text):
        return [t for t in jieba.lcut(text.lower())
                if not all(c.isspace() or unicodedata.category(c)[0] == "P" for c in t)]


def naive_rouge(preds, refs) -> list[dict]:
    scorer = rouge_scorer.RougeScorer(list(chinese.ROUGE_TYPES), tokenizer=JiebaTok())
    rows = []
    for p, r in zip(preds, refs):
        s = scorer.score(r, p)
        rows.append({k: 100 * s[k].fmeasure for k in chinese.ROUGE_TYPES})
    return rows


def naive(preds, refs) -> tuple[list[dict], float]:
    """Per-pair ROUGE-1/2/L F1 (0-100) and corpus BLEU-4, the obvious way."""
    return naive_rouge(preds, refs), sacrebleu.corpus_bleu(preds, [refs], tokenize="zh").score


def ours(preds, refs) -> tuple[list[dict], float]:
    """The same outputs from soaes_bench.metrics.chinese."""
    return chinese.rouge_per_pair(preds, refs), chinese.bleu4(preds, refs)


def disagreement(a: tuple[list[dict], float], b: tuple[list[dict], float]) -> float:
    """Largest |difference| over every pair's ROUGE-1/2/L and the corpus BLEU-4 of two outputs."""
    rows = max((abs(x[k] - y[k]) for x, y in zip(a[0], b[0]) for k in chinese.ROUGE_TYPES), default=0.0)
    return max(rows, abs(a[1] - b[1])) if len(a[0]) == len(b[0]) else float("inf")


def _clear_caches():
    TokenizerZh.__call__.cache_clear()
    TokenizerRegexp.__call__.cache_clear()
    chinese._cached_tokens.cache_clear()
    chinese._cut_block.cache_clear()


def timed(fn, *args):
    """(CPU seconds, result): process time, since the machine may be shared and all of this is one thread."""
    _clear_caches()
    t0 = time.process_time()
    out = fn(*args)
    return time.process_time() - t0, out


def main(argv=None) -> int:
    from bench_training import DEFAULT_REPEATS, ci_text, machine  # same directory: shared helpers

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                    help="timed runs of each side (6: [min, max] of the ratios is a 96.9%% CI of their median)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-block-cache", action="store_true",
                    help="disable our memo of jieba blocks (clauses), i.e. time ours as if no clause ever repeated")
    a = ap.parse_args(argv)
    if a.no_block_cache:
        from functools import lru_cache

        chinese._cut_block = lru_cache(maxsize=0)(chinese._cut_block.__wrapped__)

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    chinese.tokenize_words("预热")  # load both jieba dictionaries before timing
    preds, refs, source = make_pairs(a.pairs, a.seed)
    n_chars = sum(map(len, refs)) / len(refs)
    print(f"{a.pairs} pairs from {source}; mean reference length {n_chars:.0f} chars; "
          f"{len(set(refs))} distinct references, {len(set(preds))} distinct predictions; {a.repeats} repeats, "
          f"1 thread; {machine()}")
    print("both sides: ROUGE-1/2/L F1 of every pair + one corpus BLEU-4 (naive: rouge-score with a jieba tokenizer "
          "+ sacrebleu.corpus_bleu; ours: chinese.rouge_per_pair + chinese.bleu4, "
          + ("its memo of jieba clauses OFF: --no-block-cache)" if a.no_block_cache
             else "with its memo of jieba clauses)"))

    sides = {"naive": naive, "ours": ours, "naive_rouge": naive_rouge, "ours_rouge": chinese.rouge_per_pair}
    t = {k: [] for k in sides}
    out = {}
    for r in range(a.repeats):
        for pair in (("naive", "ours"), ("naive_rouge", "ours_rouge")):
            for k in (pair if r % 2 == 0 else pair[::-1]):
                dt, out[k] = timed(sides[k], preds, refs)
                t[k].append(dt)

    gap = disagreement(out["naive"], out["ours"])
    gap_rouge = disagreement((out["naive_rouge"], 0.0), (out["ours_rouge"], 0.0))
    ok = gap < 1e-9 and gap_rouge < 1e-9
    med = statistics.median
    ratio = [x / y for x, y in zip(t["naive"], t["ours"])]
    ratio_rouge = [x / y for x, y in zip(t["naive_rouge"], t["ours_rouge"])]
    print(f"{'CPU seconds, median':28}{'naive':>8}{'ours':>8}   naive/ours: median of per-repeat ratios [CI]")
    print(f"{'ROUGE per pair + BLEU-4':28}{med(t['naive']):8.2f}{med(t['ours']):8.2f}   {ci_text(ratio)}")
    print(f"{'ROUGE per pair only':28}{med(t['naive_rouge']):8.2f}{med(t['ours_rouge']):8.2f}   {ci_text(ratio_rouge)}")
    print("per-repeat naive/ours: " + ", ".join(f"{x:.2f}" for x in ratio))
    means = chinese.score(preds, refs)
    print("values (ours, means over pairs): "
          + ", ".join(f"{k} {means[k]:.4f}" for k in (*chinese.ROUGE_TYPES, "bleu4")))
    print(f"outputs agree (every pair's ROUGE-1/2/L and corpus BLEU-4, max |diff| {max(gap, gap_rouge):.1e} < 1e-9): "
          + ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
