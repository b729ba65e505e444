"""Content-free floors: pure helpers (soaes_bench.metrics.floors), toy lm-eval tasks checked by hand
(soaes_bench.evaluation.task_floors), the shipped suites, the CLI, and the floor columns of results.md and `compare`."""

import json
import math
import textwrap
import types

import pytest
from fixtures.reporting_runs import make_results

from soaes_bench import cli
from soaes_bench.evaluation import task_floors, writer
from soaes_bench.io import read_json, read_jsonl, write_json, write_jsonl
from soaes_bench.metrics import floors
from soaes_bench.paths import tasks_dir


# --- pure helpers ------------------------------------------------------------------------------------------------
def test_constant_position_and_uniform_chance_by_hand():
    golds = [0, 0, 1, 3, 0]
    assert [floors.constant_position_accuracy(golds, k) for k in range(4)] == [0.6, 0.2, 0.0, 0.2]
    assert floors.uniform_chance_accuracy(golds, 4) == 0.25
    assert floors.uniform_chance_accuracy([0, 2], [2, 4]) == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert floors.uniform_chance_accuracy([5], [4]) == 0.0  # gold out of range: never right
    with pytest.raises(ValueError):
        floors.constant_position_accuracy([], 0)


def test_most_common_answer_breaks_ties_by_first_occurrence():
    assert floors.most_common_answer(["b", "a", "a", "b", "c"]) == ("b", 2)
    assert floors.most_common_answer(["x", "y", "y"]) == ("y", 2)
    assert floors.most_common_answer(["z", "y"]) == ("z", 1)
    with pytest.raises(ValueError):
        floors.most_common_answer([])


def test_byte_models_by_hand():
    assert floors.uniform_byte_loglikelihood("ab中") == pytest.approx(-5 * math.log(256))
    texts = ["ab", "中文"]
    assert floors.bits_per_byte([floors.uniform_byte_loglikelihood(t) for t in texts], texts) == pytest.approx(8)
    # a:3 b:2 中:1 of 6 characters, 8 bytes
    lls = floors.unigram_char_loglikelihoods(["aab", "ab", "中"])
    assert lls == pytest.approx([2 * math.log(3 / 6) + math.log(2 / 6), math.log(3 / 6) + math.log(2 / 6),
                                 math.log(1 / 6)])
    assert floors.bits_per_byte(lls, ["aab", "ab", "中"]) == pytest.approx(
        (3 * math.log(2) + 2 * math.log(3) + math.log(6)) / 8 / math.log(2))


def test_position_names_and_best_of():
    assert [floors.position_name(k) for k in (0, 3, 25, 26)] == ["always A", "always D", "always Z", "always #27"]
    vals = {"a": 0.2, "b": 0.3, "c": 0.3, "d": None}
    assert floors.best_of(vals, True) == ("b", 0.3)  # first of a tie
    assert floors.best_of(vals, False) == ("a", 0.2)
    assert floors.best_of(vals, None) is None and floors.best_of({"x": None}, True) is None


# --- toy lm-eval tasks -------------------------------------------------------------------------------------------
MC_ROWS = [  # gold letters A A B D A; choice texts of different lengths for the answer-only heuristics
    {"id": "m1", "question": "q1", "choices": ["长长长", "短", "中中", "中中"], "answer": 0},
    {"id": "m2", "question": "q2", "choices": ["一", "二二", "三三三", "四"], "answer": 0},
    {"id": "m3", "question": "q3", "choices": ["aa", "bbbb", "c", "dd"], "answer": 1},
    {"id": "m4", "question": "q4", "choices": ["x", "y", "zz", "wwww"], "answer": 3},
    {"id": "m5", "question": "q5", "choices": ["p", "q", "r", "s"], "answer": 0},
]
CLOZE_ROWS = [  # choices are the texts; item 3 has only 3 choices
    {"id": "c1", "question": "句一", "choices": ["甲", "乙乙", "丙", "丁"], "answer": 1},
    {"id": "c2", "question": "句二", "choices": ["甲", "乙", "丙", "丁"], "answer": 3},
    {"id": "c3", "question": "句三", "choices": ["甲", "乙", "丙"], "answer": 2},
    {"id": "c4", "question": "句四", "choices": ["甲", "乙", "丙", "丁"], "answer": 3},
]
GEN_ROWS = [
    {"id": "g1", "question": "首都？", "answer": "北京"},
    {"id": "g2", "question": "最大城市？", "answer": "上海"},
    {"id": "g3", "question": "广州", "answer": "广州"},  # the question copied is right here
    {"id": "g4", "question": "首都是？", "answer": "北京"},
    {"id": "g5", "question": "南方？", "answer": "上海"},  # 北京 and 上海 tie at 2: 北京 occurs first
]
TEXT_ROWS = [{"id": "t1", "text": "aab"}, {"id": "t2", "text": "ab"}, {"id": "t3", "text": "中"}]

UTILS = '''
from pathlib import Path

from soaes_bench.evaluation.task_hooks import load_split

DATA = Path(__file__).resolve().parent / "data"


def load(data_file=None, **_):
    return load_split(DATA / str(data_file))


def rotate(dataset):
    """Circular form: each item as 4 rotations of its choices (gold moves with them)."""
    def expand(batch):
        out = {k: [] for k in ("id", "question", "choices", "answer", "orig")}
        for i in range(len(batch["id"])):
            ch, a = batch["choices"][i], batch["answer"][i]
            for r in range(len(ch)):
                out["id"].append(f"{batch['id'][i]}-r{r}")
                out["question"].append(batch["question"][i])
                out["choices"].append(ch[r:] + ch[:r])
                out["answer"].append((a - r) % len(ch))
                out["orig"].append(batch["id"][i])
        return out
    return dataset.map(expand, batched=True, remove_columns=dataset.column_names)


def circ_results(doc, results):
    lls = [ll for ll, _ in results]
    return {"circ_acc": (doc["orig"], float(lls.index(max(lls)) == doc["answer"]))}


def all_rotations_right(items):
    ok = {}
    for orig, right in items:
        ok[orig] = ok.get(orig, True) and right == 1.0
    return sum(ok.values()) / len(ok)
'''

YAMLS = {
    "toy_mc.yaml": """
        task: toy_mc
        custom_dataset: !function utils.load
        dataset_kwargs: {data_file: mc.jsonl}
        test_split: test
        output_type: multiple_choice
        doc_to_text: "{{question}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. {{choices[2]}}\\nD. {{choices[3]}}"
        doc_to_choice: ["A", "B", "C", "D"]
        doc_to_target: answer
        metric_list:
          - {metric: acc, aggregation: mean, higher_is_better: true}
          - {metric: acc_norm, aggregation: mean, higher_is_better: true}
        """,
    "toy_cloze.yaml": """
        task: toy_cloze
        custom_dataset: !function utils.load
        dataset_kwargs: {data_file: cloze.jsonl}
        test_split: test
        output_type: multiple_choice
        doc_to_text: "{{question}}"
        doc_to_choice: choices
        doc_to_target: answer
        metric_list:
          - {metric: acc, aggregation: mean, higher_is_better: true}
        """,
    "toy_circ.yaml": """
        task: toy_circ
        custom_dataset: !function utils.load
        dataset_kwargs: {data_file: mc.jsonl}
        test_split: test
        process_docs: !function utils.rotate
        output_type: multiple_choice
        doc_to_text: "{{question}}"
        doc_to_choice: ["A", "B", "C", "D"]
        doc_to_target: answer
        process_results: !function utils.circ_results
        metric_list:
          - {metric: circ_acc, aggregation: !function utils.all_rotations_right, higher_is_better: true}
        """,
    "toy_gen.yaml": """
        task: toy_gen
        custom_dataset: !function utils.load
        dataset_kwargs: {data_file: gen.jsonl}
        test_split: test
        output_type: generate_until
        doc_to_text: "问题：{{question}}\\n答案："
        doc_to_target: answer
        generation_kwargs: {until: ["\\n\\n"], do_sample: false}
        metric_list:
          - {metric: exact_match, aggregation: mean, higher_is_better: true}
        """,
    "toy_text.yaml": """
        task: toy_text
        custom_dataset: !function utils.load
        dataset_kwargs: {data_file: text.jsonl}
        test_split: test
        output_type: loglikelihood_rolling
        doc_to_text: ""
        doc_to_target: text
        metric_list:
          - {metric: bits_per_byte, aggregation: bits_per_byte, higher_is_better: false}
          - {metric: byte_perplexity, aggregation: weighted_perplexity, higher_is_better: false}
        """,
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy_tasks")
    (d / "utils.py").write_text(UTILS, encoding="utf-8")
    for name, rows in (("mc", MC_ROWS), ("cloze", CLOZE_ROWS), ("gen", GEN_ROWS), ("text", TEXT_ROWS)):
        write_jsonl(d / "data" / f"{name}.jsonl", rows)
    for name, text in YAMLS.items():
        (d / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return d


def test_letter_mc_floors_by_hand(toy):
    f = task_floors.task_floors("toy_mc", toy)
    assert f["output_type"] == "multiple_choice" and f["n"] == 5 and f["no_floor"] is None
    acc = f["floors"]["acc"]
    golds = [r["answer"] for r in MC_ROWS]
    assert [acc[floors.position_name(k)] for k in range(4)] == [0.6, 0.2, 0.0, 0.2]
    assert [floors.constant_position_accuracy(golds, k) for k in range(4)] == [0.6, 0.2, 0.0, 0.2]
    assert acc["uniform chance"] == pytest.approx(0.25)
    # letters are all one character, so the heuristics read the doc's `choices` texts:
    # longest = 长长长(A) 三三三(C) bbbb(B) wwww(D) p(A): right on m1, m3, m4, m5 -> 0.8 (m2's gold is A)
    # shortest = 短(B) 一(A) c(C) x(A) p(A): right on m2, m5 -> 0.4
    assert acc[floors.LONGEST] == pytest.approx(0.8) and acc[floors.SHORTEST] == pytest.approx(0.4)
    assert f["floors"]["acc_norm"] == acc
    assert f["higher_is_better"] == {"acc": True, "acc_norm": True}
    assert f["best"]["acc"] == {"name": floors.LONGEST, "value": pytest.approx(0.8)}
    assert task_floors.best_floor("toy_mc", "acc", toy) == (floors.LONGEST, pytest.approx(0.8))
    assert task_floors.best_floor("toy_mc", "no_such_metric", toy) is None


def test_cloze_floors_clamp_short_items_and_average_chance_per_item(toy):
    acc = task_floors.task_floors("toy_cloze", toy)["floors"]["acc"]
    # golds 1, 3, 2, 3; item c3 has 3 choices, so "always D" answers its last choice (index 2, the gold)
    assert acc["always A"] == 0.0 and acc["always B"] == 0.25 and acc["always C"] == 0.25
    assert acc["always D"] == 0.75
    assert acc["uniform chance"] == pytest.approx((1 / 4 + 1 / 4 + 1 / 3 + 1 / 4) / 4)
    # choice texts differ in length only in c1: longest picks 乙乙 (right there), else the first (甲): 1/4
    assert acc[floors.LONGEST] == 0.25 and acc[floors.SHORTEST] == 0.0


def test_circular_form_goes_through_its_own_hooks(toy):
    f = task_floors.task_floors("toy_circ", toy)
    assert f["n"] == 20  # 5 items x 4 rotations: eval_docs are already expanded
    circ = f["floors"]["circ_acc"]
    # a constant position is right on exactly one rotation of each item, so never on all four
    assert [circ[floors.position_name(k)] for k in range(4)] == [0.0] * 4
    # non-mean aggregation: Monte Carlo uniform chance, expectation (1/4)^4 per item
    assert 0.0 <= circ["uniform chance"] <= 0.05
    assert "Monte Carlo" in f["about"]["uniform chance"]


def test_generation_floors_by_hand(toy):
    f = task_floors.task_floors("toy_gen", toy)
    em = f["floors"]["exact_match"]
    assert em == {"empty answer": 0.0, "question copied": pytest.approx(0.2), "most common answer": pytest.approx(0.4)}
    assert floors.most_common_answer(r["answer"] for r in GEN_ROWS) == ("北京", 2)
    assert "'北京'" in f["about"]["most common answer"] and "2 of 5" in f["about"]["most common answer"]
    assert task_floors.best_floor("toy_gen", "exact_match", toy) == ("most common answer", pytest.approx(0.4))


def test_rolling_floors_by_hand(toy):
    f = task_floors.task_floors("toy_text", toy)
    bpb, ppl = f["floors"]["bits_per_byte"], f["floors"]["byte_perplexity"]
    assert bpb["uniform bytes"] == pytest.approx(8.0) and ppl["uniform bytes"] == pytest.approx(256.0)
    unigram = (3 * math.log(2) + 2 * math.log(3) + math.log(6)) / 8 / math.log(2)
    assert bpb[floors.UNIGRAM] == pytest.approx(unigram) and ppl[floors.UNIGRAM] == pytest.approx(2 ** unigram)
    assert f["higher_is_better"]["bits_per_byte"] is False
    assert task_floors.best_floor("toy_text", "bits_per_byte", toy) == (floors.UNIGRAM, pytest.approx(unigram))  # lower wins


def test_limit_floors_only_the_first_items(toy):
    f = task_floors.task_floors("toy_mc", toy, limit=2)
    assert f["n"] == 2 and f["floors"]["acc"]["always A"] == 1.0


def test_unfloorable_output_type_is_an_entry_not_a_crash():
    fake = types.SimpleNamespace(task_name="odd", OUTPUT_TYPE="something_new", config=None)
    f = task_floors.compute_floors(fake)
    assert f["no_floor"] and "something_new" in f["no_floor"] and f["floors"] == {} and f["best"] == {}
    assert "no floor" in task_floors.format_floors({"odd": f})


def test_best_floor_is_computed_once_per_task(toy, monkeypatch):
    calls = []
    real = task_floors.compute_floors
    monkeypatch.setattr(task_floors, "compute_floors", lambda task, limit=None: calls.append(task) or real(task, limit))
    task_floors._cached.cache_clear()
    assert task_floors.best_floor("toy_mc", "acc", toy) == task_floors.best_floor("toy_mc", "acc_norm", toy)
    task_floors.task_floors("toy_mc", toy)["floors"]["acc"].clear()  # a copy: the cache is not touched
    assert task_floors.best_floor("toy_mc", "acc", toy)[1] == pytest.approx(0.8)
    assert len(calls) == 1


def test_cache_follows_the_task_folder_run_uses(toy, monkeypatch):
    from soaes_bench.evaluation import suites

    assert task_floors.best_floor("soaes_general_mc", "acc")[0] == "always A"
    monkeypatch.setattr(suites, "tasks_dir", lambda: toy)  # as tests/test_run.py points runs at fixture tasks
    assert task_floors.best_floor("toy_mc", "acc") == (floors.LONGEST, pytest.approx(0.8))
    with pytest.raises(Exception, match="unknown task"):
        task_floors.task_floors("soaes_general_mc")


# --- shipped suites ----------------------------------------------------------------------------------------------
def test_shipped_general_mc_always_a_matches_the_gold_letters():
    golds = [r["answer"] for r in read_jsonl(tasks_dir() / "soaes_general" / "data" / "general_mc.jsonl")]
    assert [golds.count(k) for k in range(4)] == [73, 54, 56, 57]
    f = task_floors.task_floors("soaes_general_mc")
    for k in range(4):
        assert f["floors"]["acc"][floors.position_name(k)] == pytest.approx(floors.constant_position_accuracy(golds, k))
    assert task_floors.best_floor("soaes_general_mc", "acc") == ("always A", pytest.approx(73 / 240))


def test_shipped_bpb_and_generation_floors():
    f = task_floors.task_floors("soaes_general_zh_bpb")
    texts = [r["text"] for r in read_jsonl(tasks_dir() / "soaes_general" / "data" / "zh_text.jsonl")]
    assert f["floors"]["bits_per_byte"]["uniform bytes"] == pytest.approx(8.0)
    assert f["floors"]["bits_per_byte"][floors.UNIGRAM] == pytest.approx(
        floors.bits_per_byte(floors.unigram_char_loglikelihoods(texts), texts))
    g = task_floors.task_floors("soaes_domain_qa")
    assert g["floors"]["rouge1"]["empty answer"] == 0.0
    assert g["floors"]["distinct"]["most common answer"] == pytest.approx(1 / g["n"])  # one answer for all
    assert g["higher_is_better"]["length_ratio"] is None and g["best"]["length_ratio"] is None


def test_floors_default_covers_both_suites_and_expands_groups():
    out = task_floors.floors()
    assert set(out) >= {"soaes_general_zh_bpb", "soaes_general_en_bpb", "soaes_general_mc", "soaes_general_gen",
                        "soaes_domain_bpb", "soaes_domain_qa", "soaes_domain_mc"}
    assert all(f["no_floor"] is None and f["best"] for f in out.values())
    domain = list(task_floors.floors(["soaes_domain"]))
    assert domain[:3] == ["soaes_domain_bpb", "soaes_domain_qa", "soaes_domain_mc"]
    assert all(t.startswith("soaes_domain") for t in domain)


# --- CLI and tables ----------------------------------------------------------------------------------------------
def test_cli_json_and_table(toy, capsys):
    assert cli.main(["floors", "--tasks", "toy_mc,toy_gen", "--include-path", str(toy), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["toy_mc"]["best"]["acc"]["name"] == floors.LONGEST and "exact_match" in out["toy_gen"]["floors"]
    assert cli.main(["floors", "--tasks", "toy_text", "--include-path", str(toy)]) == 0
    table = capsys.readouterr().out
    assert "bits_per_byte ↓" in table and "uniform bytes" in table and f"({floors.UNIGRAM})" in table
    assert cli.main(["floors", "--tasks", "no_such_task"]) == 2
    assert "unknown task" in capsys.readouterr().err


def _results(floors_block=None):
    task = {"group": "g", "version": 1, "config_sha256": "c", "n": 240, "output_type": "multiple_choice",
            "higher_is_better": {"acc": True}, "metrics": {"acc": {"value": 0.25, "stderr": 0.03}}, "samples": "s"}
    if floors_block is not None:
        task["floors"] = floors_block
    return {"model": {"name": "m", "n_params": 1}, "suite": "all", "limit": None, "env": {},
            "tasks": {"soaes_general_mc": task}, "groups": {"g": {"metrics": {"acc": {"value": 0.25, "stderr": None}},
                                                                 "n": 240}}}


def test_results_md_shows_the_best_floor_beside_the_score():
    md = writer.markdown_table(_results({"acc": {"name": "always A", "value": 0.30416}}))
    assert "| task | n | metric | value | stderr | floor |" in md
    assert "| soaes_general_mc | 240 | acc ↑ | 0.2500 | 0.0300 | 0.3042 (always A) |" in md
    assert "| **g** | 240 | acc ↑ | 0.2500 | – | – |" in md
    assert "floor" not in writer.markdown_table(_results()).split("\n\n")[1].splitlines()[0]  # old files: no column


def test_compare_has_a_floor_column_from_results_json(tmp_path):
    from soaes_bench.reporting.compare import compare
    from soaes_bench.reporting.comparison_table import format_comparison

    a = make_results(tmp_path / "a", "base", {"soaes_general_mc": {"acc": [1.0, 0.0, 0.0, 1.0]}})
    b = make_results(tmp_path / "b", "cpt", {"soaes_general_mc": {"acc": [1.0, 1.0, 0.0, 1.0]}})
    no_floor = format_comparison(compare([a, b], resamples=20), "markdown")
    assert "floor" not in no_floor.splitlines()[0]
    obj = read_json(b)
    obj["tasks"]["soaes_general_mc"]["floors"] = {"acc": {"name": "always A", "value": 0.3042}}
    write_json(b, obj)
    df = compare([a, b], resamples=20)
    row = df[(df.level == "task") & (df.metric == "acc")].iloc[0]
    assert (row.floor, row.floor_name) == (0.3042, "always A")
    md = format_comparison(df, "markdown")
    assert md.startswith("| task | metric | base | cpt | floor |") and "0.304 (always A)" in md
