"""Generation health metrics (soaes_bench.metrics.health): hand-computed cases, real looping answers from the committed
reports, real law text that must not count as looping, and the lm-eval round trip down to samples/ and check."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from soaes_bench.metrics import health
from soaes_bench.metrics.health import distinct_share, is_looping, length_ratio, repetition_share, text_length
from soaes_bench.paths import tasks_dir

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "tasks_data"
LAW = "《中华人民共和国公司法》"  # 12 characters

# Answers copied from the committed samples (reports/baseline, reports/reference/sft/eval: the shipped target's only
# three answers to the 200 domain questions; reports/reference/sft/single_stage/eval; reports/baseline general_gen;
# reports/base) with the share of repeated characters they have.
LOOPING = [
    "（二）、行政法规的规定、" + "行政法规的规定、" * 29,  # the target's answer to 117 of the 200 questions
    "（一）、行政法规的规定、" + "行政法规的规定、" * 29,  # 59
    "（二）、行政法规、" + "行政法规的规定、" * 29,  # 24
    f"{LAW}违反本法，应当向{LAW}应当向{LAW}，应当向国务院证券监督管理机构。",  # single_stage SFT, share 0.571
    f"{LAW}违反本法，应当向{LAW}应当向{LAW}，应当向股东。",
    f"{LAW}违反本法，应当向{LAW}，由{LAW}，由社会、" + "自治区、" * 22 + "自治区",
    f"（一）{LAW}：\n（一）{LAW}》，由{LAW}》，由{LAW}》可以向其他。",  # baseline general_gen
    "（记者）\n（记者）\n（记者）",
    "（\t--------------日电（记者）\n1月6日，1月6日，1月6日，19日20日，1.5.5.5.5.",  # base: several loops in turn
    "（\t--------------日电（记者）\n1、1、1、2月6日 ：\n（记者）\n1月6日，1月6日，1、2、3、3、3、3、3、3、3、3、2、3、",
    "75" * 31 + "有关的" * 23 + "”（" * 10,  # reports/untrained: three loops in turn
    "礼貌" * 35 + "纷" * 29,
]
NOT_LOOPING = [
    LAW,
    f"{LAW}违反本法，应当向股东。",
    f"{LAW}违反本法，应当向国务院证券监督管理机构。",
    "（一）《中华人民共和国公司法》：\n（一）《中华人民共和国公司法》》",  # twice is not a loop
    "（\t--1月6日 ：  \"IIIIII,  I",
    "",
]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


# distinct ------------------------------------------------------------------------------------------------------
def test_distinct_share_hand_cases():
    assert distinct_share(["a", "a", "b"]) == pytest.approx(2 / 3)
    assert distinct_share([" a", "a\n", "a"]) == pytest.approx(1 / 3)  # compared after stripping
    assert distinct_share(["", " ", "x", "y"]) == pytest.approx(3 / 4)  # every empty answer is the same answer ""
    assert distinct_share([""] * 200) == pytest.approx(1 / 200)
    assert distinct_share(["甲", "乙", "丙"]) == 1.0
    with pytest.raises(ValueError, match="no predictions"):
        distinct_share([])


# looping -------------------------------------------------------------------------------------------------------
def test_repetition_share_hand_cases():
    assert repetition_share("自治区、" * 10) == 1.0
    # one clause three times: 3 x 12 of 42 characters; "《…》》" (13) occurs only twice
    assert repetition_share(f"{LAW}》，由{LAW}》是{LAW}。") == pytest.approx(36 / 42)
    # law text: "个人信息" three times = 12 of 43 characters
    assert repetition_share("个人信息处理者应当对其个人信息处理活动负责，并采取必要措施保障所处理的个人信息的安全。") == pytest.approx(12 / 43)
    assert repetition_share("（记者）\n（记者）\n（记者）") == pytest.approx(12 / 14)
    # two loops in turn: the best clause alone covers 9 of 19, the back-to-back runs 9 + 6
    text = "有关的" * 3 + "礼貌" * 3 + "行政法规"
    assert repetition_share(text) == pytest.approx(15 / 19) and is_looping(text)
    assert repetition_share("好好好") == 1.0  # a run of one character
    assert repetition_share("甲乙丙丁，甲乙丙丁") == 0.0  # twice is not a loop
    assert repetition_share("  ") == 0.0 and repetition_share("") == 0.0 and not is_looping("")
    # numbers are not loops: zeros of 1000000, "00" and ",000" in 100,000,000; a digit loop is
    assert repetition_share("罚款1000000元") == 0.0 and repetition_share("100,000,000") == 0.0
    assert repetition_share("757575") == 1.0


def test_threshold_is_half_the_answer():
    assert health.LOOP_THRESHOLD == 0.5
    assert is_looping("自治区、" * 2 + "甲乙丙丁") is False  # no clause three times
    just = "自治区、" * 3 + "甲乙丙丁戊己庚辛壬癸子"  # 12 of 23 repeated
    assert repetition_share(just) == pytest.approx(12 / 23) and is_looping(just)
    assert not is_looping(just, threshold=0.6)


@pytest.mark.parametrize("text", LOOPING)
def test_committed_looping_answers_are_looping(text):
    assert is_looping(text), repetition_share(text)


@pytest.mark.parametrize("text", NOT_LOOPING)
def test_committed_short_answers_are_not_looping(text):
    assert not is_looping(text), repetition_share(text)


@pytest.mark.parametrize("task", ["soaes_domain_qa", "soaes_domain_knowledge", "soaes_general_gen"])
def test_committed_results_agree_with_the_health_of_their_samples(task):
    """reports/baseline (the shipped target): distinct, looping and length_ratio recomputed from the samples'
    predictions and references are the values results.json reports."""
    run = ROOT / "reports" / "baseline"
    rows = _rows(run / "samples" / f"{task}.jsonl")
    h = health.health([r["prediction"] for r in rows], [r["target"] for r in rows])
    metrics = json.loads((run / "results.json").read_text(encoding="utf-8"))["tasks"][task]["metrics"]
    assert h["n"] == len(rows) > 0
    for name in ("distinct", "looping", "length_ratio"):
        assert metrics[name]["value"] == pytest.approx(h[name]), name
    assert h["length_ratio"] == pytest.approx(h["pred_chars"] / h["ref_chars"])


@pytest.mark.parametrize("data", ["soaes_domain/data/domain_qa.jsonl", "soaes_general/data/general_gen.jsonl"])
def test_reference_answers_are_never_looping(data):
    """Real law articles and news repeat terms ("国务院", "个人信息", a phrase twice): 0 of 200 references flagged,
    and the largest repetition share stays well below the threshold."""
    answers = [r["answer"] for r in _rows(tasks_dir() / data)]
    assert len(answers) >= 100
    assert [a for a in answers if is_looping(a)] == []
    assert max(repetition_share(a) for a in answers) < 0.4


def test_law_text_sentences_and_options_are_not_looping():
    import re

    data = tasks_dir()
    texts = [r["text"] for r in _rows(data / "soaes_domain" / "data" / "domain_text.jsonl")]
    options = [c for r in _rows(data / "soaes_domain" / "data" / "domain_mc.jsonl") for c in r["choices"]]
    sentences = [s for t in texts for s in re.split(r"(?<=[。；\n])", t) if s.strip()]
    flagged = [t for t in texts + sentences + options if is_looping(t)]
    assert flagged == []


# length --------------------------------------------------------------------------------------------------------
def test_lengths_and_corpus_ratio():
    assert text_length("  国务院\n") == 3 and text_length("") == 0 and text_length(None) == 0
    assert length_ratio([(10, 5), (0, 15)]) == pytest.approx(0.5)  # (10 + 0) / (5 + 15), not mean(2, 0) = 1
    assert length_ratio([(4, 4)]) == 1.0
    assert math.isnan(length_ratio([(3, 0)]))
    with pytest.raises(ValueError):
        length_ratio([])
    h = health.health(["行政法规的规定、" * 4, "国务院"], ["国务院主管。", "国务院"])
    assert h == {"distinct": 1.0, "looping": 0.5, "length_ratio": pytest.approx(35 / 9), "pred_chars": 17.5,
                 "ref_chars": 4.5, "n": 2}


# lm-eval round trip --------------------------------------------------------------------------------------------
def test_task_config_declares_the_metrics_and_directions(fixture_tasks):
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=[str(fixture_tasks)], include_defaults=False)
    for name in ("soaes_general_gen", "soaes_domain_qa"):
        task = tm.load([name])["tasks"][name]
        hib = task.higher_is_better()
        assert (hib["distinct"], hib["looping"], hib["length_ratio"]) == (True, False, None)
        assert hib["rouge1"] is True and task.config.metadata["version"] == 3  # 3: the bare-question prompt
        docs = list(task.eval_docs)
        raw = ["行政法规的规定、" * 8 + "<|im_end|>", "行政法规的规定、" * 8, docs[0]["answer"] + "\n\n下一题"][:len(docs)]
        outs = [task.process_results(d, [r]) for d, r in zip(docs, raw)]
        agg = task.aggregation()
        value = {m: agg[m]([o[m] for o in outs]) for m in ("distinct", "looping", "length_ratio")}
        preds = ["行政法规的规定、" * 8] * 2 + [docs[0]["answer"]]
        preds = preds[:len(docs)]
        assert value["distinct"] == pytest.approx(distinct_share(preds))
        assert value["looping"] == pytest.approx(sum(map(is_looping, preds)) / len(preds))
        assert value["length_ratio"] == pytest.approx(
            sum(map(len, preds)) / sum(len(d["answer"].strip()) for d in docs[:len(preds)]))


class _CannedLM:
    """An lm-eval LM that answers every generation request with canned text (no model): built lazily so that the
    import of lm_eval happens inside the test."""

    @staticmethod
    def make(answers):
        from lm_eval.api.model import LM

        class Canned(LM):
            def loglikelihood(self, requests):
                return [(-1.0, False) for _ in requests]

            def loglikelihood_rolling(self, requests):
                return [-1.0 for _ in requests]

            def generate_until(self, requests):
                return [answers(r.args[0]) for r in requests]

        return Canned()


def _run(fixture_tasks, out_dir: Path, answers) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from soaes_bench.evaluation import writer

    tm = TaskManager(include_path=[str(fixture_tasks)], include_defaults=False)
    out = lm_eval.simple_evaluate(_CannedLM.make(answers), tasks=["soaes_domain_qa"], task_manager=tm,
                                  log_samples=True, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                                  fewshot_random_seed=0)
    res = writer.build_results(out, task_groups={"soaes_domain_qa": "soaes_domain"},
                               model={"name": out_dir.name}, env={"device": "cpu"}, suite="custom", seed=0,
                               limit=None, run=out_dir.name)
    return writer.write_run(res, out_dir)


def test_lm_eval_round_trip_to_samples_compare_and_check(fixture_tasks, tmp_path):
    from soaes_bench import results
    from soaes_bench.reporting.check import check, format_check
    from soaes_bench.reporting.compare import compare
    from soaes_bench.reporting.comparison_table import format_comparison

    docs = _rows(FIXTURES / "soaes_domain" / "domain_qa.jsonl")
    loop = "行政法规的规定、" * 8
    a = _run(fixture_tasks, tmp_path / "looping", lambda prompt: loop)
    b = _run(fixture_tasks, tmp_path / "healthy", lambda prompt: next(d["answer"] for d in docs
                                                                       if d["question"] in prompt))
    t = a["tasks"]["soaes_domain_qa"]
    m = {k: v["value"] for k, v in t["metrics"].items()}
    refs = sum(len(d["answer"]) for d in docs)
    assert m["distinct"] == pytest.approx(1 / 4) and m["looping"] == 1.0
    assert m["length_ratio"] == pytest.approx(4 * len(loop) / refs)
    assert t["version"] == 3 and t["higher_is_better"]["length_ratio"] is None
    assert t["higher_is_better"]["looping"] is False and t["higher_is_better"]["distinct"] is True
    rows = _rows(tmp_path / "looping" / t["samples"])
    for row, doc in zip(rows, docs):
        assert set(row["metrics"]) == {"rouge1", "rouge2", "rougeL", "looping"}  # no None for distinct/length_ratio
        assert row["metrics"]["looping"] == 1.0 and row["prediction"] == loop
        assert (row["pred_len"], row["ref_len"]) == (len(loop), len(doc["answer"]))
    # the task values are recomputable from the rows
    assert distinct_share([r["prediction"] for r in rows]) == pytest.approx(m["distinct"])
    assert length_ratio([(r["pred_len"], r["ref_len"]) for r in rows]) == pytest.approx(m["length_ratio"])
    mb = {k: v["value"] for k, v in b["tasks"]["soaes_domain_qa"]["metrics"].items()}
    assert (mb["distinct"], mb["looping"], mb["length_ratio"]) == (1.0, 0.0, pytest.approx(1.0))
    md = (tmp_path / "looping" / "results.md").read_text(encoding="utf-8")
    assert "| length_ratio |" in md and "| looping ↓ |" in md and "| distinct ↑ |" in md

    # compare: looping gets a paired CI from the 0/1 rows; distinct and length_ratio none (corpus statistics)
    df = compare([tmp_path / "healthy", tmp_path / "looping"], resamples=200)
    row = df[df.metric == "looping"].iloc[0]
    assert row["diff"] == 1.0 and row.ci_method == "paired-bootstrap" and not row.higher_is_better
    assert df[df.metric == "distinct"].iloc[0].ci_method == ""
    lr = df[df.metric == "length_ratio"].iloc[0]
    assert lr.ci_method == "" and lr.value > lr.value_ref
    assert "length_ratio (no direction)" in format_comparison(df)

    # check: the looping/distinct collapse is a regression, the length change in either direction is not
    for base, new in (("healthy", "looping"), ("looping", "healthy")):
        code, res = check(tmp_path / base, tmp_path / new, resamples=200)
        status = dict(zip(res.metric, res.status))
        assert status["length_ratio"] == "no direction"
        assert code == (1 if new == "looping" else 0)
        if new == "looping":
            assert status["looping"] == "REGRESSED" and status["distinct"] == "REGRESSED"
        assert "no direction" in format_check(res, code)
    assert results.metric_higher_is_better("looping") is False and "length_ratio" in results.DIRECTION_NEUTRAL
