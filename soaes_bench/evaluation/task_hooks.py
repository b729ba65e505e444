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


# --- multiple choice in three forms (tasks/README.md, "Multiple choice") ----------------------------------------
# letter:   lm-eval's built-in scoring (acc, acc_norm) of " A".." D" after the lettered prompt; no hook.
# cloze:    the question alone, each option's text is the continuation: cloze_acc, cloze_acc_norm (process_mc_cloze).
# circular: the letter prompt once per rotation of the options (circular_docs); an item counts only when every
#           rotation is right: circular_acc (circular_accuracy), plus per-rotation rotation_acc.
# Distinct metric names per form keep the group aggregates (`acc` = letter form only) from mixing forms.
N_ROTATIONS = 4


def mc_argmax(scores) -> int:
    """Index of the highest score, the first one on ties (numpy.argmax's rule, which lm-eval uses)."""
    scores = list(scores)
    return max(range(len(scores)), key=scores.__getitem__)


def byte_normalised(lls, choices) -> list[float]:
    """Loglikelihood per UTF-8 byte of each choice text: lm-eval 0.4.13's `acc_bytes` rule (its `acc_norm` divides
    by characters instead; for CJK-only options both pick the same option, digits and Latin letters differ)."""
    return [float(ll) / max(1, len(str(c).encode("utf-8"))) for ll, c in zip(lls, choices)]


def process_mc_cloze(doc: dict, results) -> dict:
    """Cloze form: `results` are (loglikelihood, is_greedy) of each option's own text after `问题：…\\n答案：`.

    cloze_acc: the option with the highest loglikelihood is the answer; cloze_acc_norm: the highest loglikelihood
    per UTF-8 byte of the option text (lm-eval's acc_bytes; longer options are not penalised for their length).
    """
    lls = [float(r[0]) for r in results]
    gold = int(doc["answer"])
    return {
        "cloze_acc": float(mc_argmax(lls) == gold),
        "cloze_acc_norm": float(mc_argmax(byte_normalised(lls, doc["choices"])) == gold),
    }


def rotate(doc: dict, k: int) -> dict:
    """The item with its options shifted left by k (rotation k: option k is shown as A); the answer follows."""
    choices = list(doc["choices"])
    n = len(choices)
    k %= n
    return {**doc, "id": f"{doc['id']}@r{k}", "item": str(doc["id"]), "rotation": k,
            "choices": choices[k:] + choices[:k], "answer": (int(doc["answer"]) - k) % n}


def circular_docs(dataset):
    """`process_docs` of the circular form: each item once per rotation (A-B-C-D, B-C-D-A, C-D-A-B, D-A-B-C, as
    OpenCompass CircularEval), item by item, so `--limit 4k` evaluates k whole items. Rotated docs keep the original
    id in `item` and get ids `<id>@r<k>`."""
    import datasets

    rows = [rotate(doc, k) for doc in dataset for k in range(len(doc["choices"]))]
    return datasets.Dataset.from_list(rows)


def process_mc_circular(doc: dict, results) -> dict:
    """Circular form, one rotation: rotation_acc (0/1, this rotation right) and circular_acc as (item, 0/1), which
    `circular_accuracy` groups by item."""
    correct = float(mc_argmax([float(r[0]) for r in results]) == int(doc["answer"]))
    return {"rotation_acc": correct, "circular_acc": (str(doc["item"]), correct)}


def circular_accuracy(items) -> float:
    """Aggregation of `circular_acc`: share of original items answered right in every rotation evaluated (all 4;
    under --limit an item cut short counts over the rotations present)."""
    right: dict[str, bool] = {}
    for item, correct in items:
        right[item] = right.get(item, True) and bool(correct)
    return sum(right.values()) / len(right) if right else float("nan")


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
