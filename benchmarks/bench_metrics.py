"""Time soaes_bench.metrics.chinese.score() against the naive way of scoring Chinese generations.

    .venv/bin/python benchmarks/bench_metrics.py                 # 10k pairs, 3 repeats (~1 min CPU)
    .venv/bin/python benchmarks/bench_metrics.py --pairs 2000 --repeats 5

Naive = per pair rouge_scorer.RougeScorer(["rouge1","rouge2","rougeL"], tokenizer=JiebaTok()).score(ref, pred)
plus sacrebleu.sentence_bleu(pred, [ref], tokenize="zh") (what an lm-eval per-sample metric does), then one
sacrebleu.corpus_bleu for the BLEU figure. Ours = score(preds, refs). Pairs are built deterministically from the
clauses of the repo's generation answers (tasks/*/data/*.jsonl rows with a string `answer`) when there are 200+,
else from a fixed SOAE vocabulary; references are 1-4 random clauses (so nearly all distinct: no cache advantage);
predictions are perturbed references (clauses dropped, swapped, replaced, truncated, some empty).
sacrebleu's tokenizer LRU caches are cleared before every timed run so repeats do not flatter either side.
Prints medians of CPU time (time.process_time), the ratio naive/ours and checks that ROUGE and corpus BLEU agree.
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


def naive(preds, refs):
    scorer = rouge_scorer.RougeScorer(list(chinese.ROUGE_TYPES), tokenizer=JiebaTok())
    sums = dict.fromkeys(chinese.ROUGE_TYPES, 0.0)
    t_rouge = 0.0
    sentence = []
    for p, r in zip(preds, refs):
        t0 = time.process_time()
        s = scorer.score(r, p)
        t_rouge += time.process_time() - t0
        for k in sums:
            sums[k] += 100 * s[k].fmeasure
        sentence.append(sacrebleu.sentence_bleu(p, [r], tokenize="zh").score)
    out = {k: v / len(preds) for k, v in sums.items()}
    out["bleu4"] = sacrebleu.corpus_bleu(preds, [refs], tokenize="zh").score
    return out, t_rouge


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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
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
          f"{len(set(refs))} distinct references, {len(set(preds))} distinct predictions; {a.repeats} repeats")

    t_naive, t_naive_rouge, t_ours, t_ours_rouge = [], [], [], []
    for _ in range(a.repeats):
        dt, (ref_out, dt_rouge) = timed(naive, preds, refs)
        t_naive.append(dt)
        t_naive_rouge.append(dt_rouge)
        dt, ours = timed(chinese.score, preds, refs)
        t_ours.append(dt)
        t_ours_rouge.append(timed(chinese.rouge, preds, refs)[0])

    ok = all(abs(ours[k] - ref_out[k]) < 1e-9 for k in (*chinese.ROUGE_TYPES, "bleu4"))
    med = statistics.median
    print(f"{'CPU seconds, median':26}{'naive':>10}{'ours':>10}{'naive/ours':>12}")
    print(f"{'score (ROUGE + BLEU)':26}{med(t_naive):10.2f}{med(t_ours):10.2f}{med(t_naive) / med(t_ours):11.1f}x")
    print(f"{'ROUGE only':26}{med(t_naive_rouge):10.2f}{med(t_ours_rouge):10.2f}"
          f"{med(t_naive_rouge) / med(t_ours_rouge):11.1f}x")
    print("values: " + ", ".join(f"{k} {ours[k]:.4f}" for k in (*chinese.ROUGE_TYPES, "bleu4")))
    print("agree with naive (|diff| < 1e-9):", "yes" if ok else f"NO, naive gave {ref_out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
