"""The Python that the lm-eval task YAMLs call (through each suite's thin `utils.py`).

Kept in the package, not in `tasks/*/utils.py`, so the two suites share one copy and the code is importable and
testable. Each suite's `utils.py` only binds `load` to its own `data/` folder (found from that file's `__file__`,
never from the current directory), so `soaes-bench run` and plain `lm_eval --include_path tasks` read the same files
from any working directory and from the installed wheel (`soaes_bench/_tasks`).
"""

from __future__ import annotations

from pathlib import Path

from soaes_bench.errors import UserError
from soaes_bench.io import read_jsonl

# Generation stops at these strings (the task YAMLs pass them as `until`); predictions are cut at them again here
# because not every lm-eval backend removes them.
STOP_STRINGS = ("<|im_end|>", "<|endoftext|>", "\n\n")


def load_split(path: str | Path):
    """One JSONL file -> `datasets.DatasetDict` with a single "test" split (what `custom_dataset` must return)."""
    import datasets

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: evaluation data not found (run `soaes-bench data build`)")
    rows = read_jsonl(path)
    if not rows:
        raise UserError(f"{path}: no rows")
    missing = [i for i, r in enumerate(rows, 1) if "id" not in r]
    if missing:
        raise UserError(f"{path}:{missing[0]}: row has no `id` field")
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def clean_prediction(text: str) -> str:
    """Cut at the first stop string and strip whitespace (what is scored and what `samples/` shows)."""
    for stop in STOP_STRINGS:
        text = text.split(stop)[0]
    return text.strip()


def process_bpb(doc: dict, results: list[float]) -> dict:
    """Per-document (loglikelihood, count) pairs for the rolling-loglikelihood metrics.

    Same as lm-eval's built-in rule except the word count: lm-eval splits on whitespace, which makes a Chinese
    paragraph one "word"; here words are jieba words without punctuation (the ROUGE tokens), for both languages.
    """
    from soaes_bench.metrics.chinese import tokenize_words

    (loglikelihood,) = results
    text = doc["text"]
    n_bytes = len(text.encode("utf-8"))
    n_words = max(1, len(tokenize_words(text)))
    return {
        "word_perplexity": (loglikelihood, n_words),
        "byte_perplexity": (loglikelihood, n_bytes),
        "bits_per_byte": (loglikelihood, n_bytes),
    }


def process_gen(doc: dict, results: list[str]) -> dict:
    """Per-item generation metrics: ROUGE-1/2/L (0-100, jieba words) and the (prediction, reference) pair that
    `corpus_bleu4` turns into corpus BLEU-4 — BLEU is a corpus statistic, so items carry pairs, not scores.

    Generation health (soaes_bench.metrics.health): `looping` 0/1 per item (task mean); `distinct` carries the
    cleaned prediction, which `corpus_distinct` turns into the share of distinct answers; `length_ratio` carries
    (prediction chars, reference chars), which `corpus_length_ratio` turns into sum(pred) / sum(ref).
    """
    from soaes_bench.metrics.chinese import rouge_pair
    from soaes_bench.metrics.health import is_looping, text_length

    pred = clean_prediction(results[0])
    ref = str(doc["answer"]).strip()
    scores = rouge_pair(pred, ref, level="word")
    return {
        "rouge1": float(scores["rouge1"]),
        "rouge2": float(scores["rouge2"]),
        "rougeL": float(scores["rougeL"]),
        "bleu4": (pred, ref),
        "distinct": pred,
        "looping": float(is_looping(pred)),
        "length_ratio": (text_length(pred), text_length(ref)),
    }


def corpus_bleu4(items) -> float:
    """Aggregation for `bleu4`: corpus BLEU-4 (0-100, sacrebleu zh tokenizer) over all (prediction, reference) pairs."""
    from soaes_bench.metrics.chinese import bleu4

    preds = [p for p, _ in items]
    refs = [r for _, r in items]
    return float(bleu4(preds, refs))


def corpus_distinct(items) -> float:
    """Aggregation for `distinct`: share of distinct answers among the cleaned predictions (health.distinct_share)."""
    from soaes_bench.metrics.health import distinct_share

    return float(distinct_share(items))


def corpus_length_ratio(items) -> float:
    """Aggregation for `length_ratio`: sum(prediction chars) / sum(reference chars) over the task's
    (pred_len, ref_len) pairs (health.length_ratio); no better direction."""
    from soaes_bench.metrics.health import length_ratio

    return float(length_ratio(items))
