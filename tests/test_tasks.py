"""The lm-eval suites (tasks/soaes_general, tasks/soaes_domain): loading from any folder, prompts, metric hooks."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from soaes_bench.errors import UserError
from soaes_bench.evaluation import task_hooks
from soaes_bench.paths import tasks_dir

FIXTURES = Path(__file__).parent / "fixtures" / "tasks_data"
GROUPS = {
    "soaes_general": ["soaes_general_zh_bpb", "soaes_general_en_bpb", "soaes_general_mc", "soaes_general_mc_cloze",
                      "soaes_general_mc_circular", "soaes_general_gen"],
    "soaes_domain": ["soaes_domain_bpb", "soaes_domain_qa", "soaes_domain_mc", "soaes_domain_mc_cloze",
                     "soaes_domain_mc_circular", "soaes_domain_knowledge", "soaes_domain_knowledge_cloze"],
}
ALL_TASKS = [t for ts in GROUPS.values() for t in ts]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _manager(path):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(path)], include_defaults=False)


@pytest.fixture(scope="module")
def loaded():
    """Both groups loaded once from the shipped folder, from a working directory that is not the repository."""
    return _manager(tasks_dir()).load(list(GROUPS))


def _fixture_copy(dst: Path) -> Path:
    """The shipped YAML + utils.py, with data/ replaced by the small fixture files (as a relocated install)."""
    shutil.copytree(tasks_dir(), dst, ignore=shutil.ignore_patterns("data", "__pycache__"))
    for suite in GROUPS:
        shutil.copytree(FIXTURES / suite, dst / suite / "data")
    return dst


def test_groups_and_tasks_load_outside_the_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tm = _manager(tasks_dir())
    assert set(GROUPS) <= set(tm.all_groups)
    assert set(ALL_TASKS) <= set(tm.all_subtasks)
    out = tm.load(list(GROUPS))
    assert out["group_map"] == GROUPS
    for name in ALL_TASKS:
        docs = out["tasks"][name].eval_docs
        assert len(docs) > 0
        ids = [d["id"] for d in docs]
        assert len(set(ids)) == len(ids), f"{name}: duplicate ids"


def test_data_is_read_next_to_utils_py_not_from_cwd(tmp_path, monkeypatch):
    copy = _fixture_copy(tmp_path / "installed" / "_tasks")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data").mkdir()  # a decoy ./data must not be picked up
    (elsewhere / "data" / "domain_mc.jsonl").write_text('{"id": "decoy"}\n', encoding="utf-8")
    monkeypatch.chdir(elsewhere)
    task = _manager(copy).load(["soaes_domain_mc"])["tasks"]["soaes_domain_mc"]
    expected = [json.loads(line)["id"] for line in (FIXTURES / "soaes_domain" / "domain_mc.jsonl").open()]
    assert [d["id"] for d in task.eval_docs] == expected


def test_every_task_is_versioned_and_groups_aggregate_by_size():
    tm = _manager(tasks_dir())
    # generation tasks: 2 since the generation-health metrics, 3 since the bare-question prompt (knowledge: 2 since
    # that prompt); tasks/README.md, Versions
    versions = {"soaes_general_gen": 3, "soaes_domain_qa": 3, "soaes_domain_knowledge": 2}
    for name in ALL_TASKS:
        expected = versions.get(name, 1)
        assert tm.task_index[name].cfg["metadata"]["version"] == expected, name
    for group, members in GROUPS.items():
        cfg = tm.task_index[group].cfg
        assert cfg["task"] == members
        aggs = {a["metric"]: a for a in cfg["aggregate_metric_list"]}
        assert {"bits_per_byte", "acc", "rouge1", "rouge2", "rougeL", "bleu4"} <= set(aggs)
        # one metric name per multiple-choice form, so no group aggregate mixes letter, cloze and circular scores
        assert {"cloze_acc", "cloze_acc_norm", "circular_acc", "rotation_acc"} <= set(aggs)
        assert all(a["weight_by_size"] is True for a in aggs.values())


def test_suite_templates_do_not_drift():
    """The two suites keep their own template copies (`!function utils.x` resolves next to the YAML)."""
    root = tasks_dir()
    for name in ("_bpb_template_yaml", "_mc_template_yaml", "_mc_cloze_template_yaml", "_mc_circular_template_yaml",
                 "_gen_template_yaml"):
        assert (root / "soaes_general" / name).read_text() == (root / "soaes_domain" / name).read_text(), name
    strip = lambda p: "\n".join(p.read_text().splitlines()[1:])  # noqa: E731 - first docstring line names the suite
    assert strip(root / "soaes_general" / "utils.py") == strip(root / "soaes_domain" / "utils.py")


def _requests(task, chat: bool):
    def render(messages, add_generation_prompt=True):
        import jinja2

        return jinja2.Template(CHATML).render(messages=messages, add_generation_prompt=add_generation_prompt)

    task.build_all_requests(limit=2, rank=0, world_size=1, apply_chat_template=chat,
                            chat_template=render if chat else None)
    return task.instances


@pytest.mark.parametrize("name", ["soaes_general_mc", "soaes_domain_mc"])
def test_mc_prompt_ends_with_answer_marker_and_continuation_is_a_letter(loaded, name):
    task = loaded["tasks"][name]
    doc = task.eval_docs[0]
    prompt = task.doc_to_text(doc)
    assert prompt.startswith("问题：") and prompt.endswith("答案：")
    for letter, choice in zip("ABCD", doc["choices"]):
        assert f"\n{letter}. {choice}\n" in prompt
    plain = _requests(task, chat=False)
    assert [i.args[1] for i in plain[:4]] == [" A", " B", " C", " D"]
    assert all(i.args[0].endswith("答案：") for i in plain)
    chat = _requests(task, chat=True)
    # lm-eval drops the target delimiter under a chat template: the letter follows the assistant header directly
    assert [i.args[1] for i in chat[:4]] == ["A", "B", "C", "D"]
    assert all(i.args[0].endswith("答案：<|im_end|>\n<|im_start|>assistant\n") for i in chat)


def test_rolling_text_is_never_wrapped_in_a_chat_template(loaded):
    task = loaded["tasks"]["soaes_domain_bpb"]
    for inst in _requests(task, chat=True):
        assert inst.args == (inst.doc["text"],)


def test_generation_prompt_and_stops(loaded):
    task = loaded["tasks"]["soaes_domain_qa"]
    inst = _requests(task, chat=False)[0]
    assert inst.args[0] == inst.doc["question"]  # the question alone: the user turn, as users ask
    chat = _requests(task, chat=True)[0]
    assert chat.args[0] == f"<|im_start|>user\n{chat.doc['question']}<|im_end|>\n<|im_start|>assistant\n"
    kw = inst.args[1]
    assert kw["until"] == ["<|im_end|>", "<|endoftext|>", "\n\n"]
    assert kw["do_sample"] is False and kw["max_gen_toks"] == 64


def test_process_gen_equals_metrics_computed_directly():
    from soaes_bench.metrics import health
    from soaes_bench.metrics.chinese import bleu4, rouge_pair

    docs = [json.loads(line) for line in (FIXTURES / "soaes_domain" / "domain_qa.jsonl").open()]
    raw = ["  企业国有资产属于国家所有。<|im_end|>后面的内容不算", docs[1]["answer"] + "\n\n下一题", "", "国务院"]
    outs = [task_hooks.process_gen(d, [r]) for d, r in zip(docs, raw)]
    cleaned = ["企业国有资产属于国家所有。", docs[1]["answer"], "", "国务院"]
    for d, p, o in zip(docs, cleaned, outs):
        direct = rouge_pair(p, d["answer"], level="word")
        assert o["bleu4"] == (p, d["answer"])
        for k in ("rouge1", "rouge2", "rougeL"):
            assert o[k] == pytest.approx(direct[k])
    assert outs[1]["rouge1"] == pytest.approx(100.0) and outs[2]["rouge1"] == 0.0
    assert task_hooks.corpus_bleu4([o["bleu4"] for o in outs]) == pytest.approx(
        bleu4(cleaned, [d["answer"] for d in docs]))
    # generation health: the cleaned prediction, 0/1 looping, (prediction chars, reference chars)
    assert [o["distinct"] for o in outs] == cleaned
    assert [o["looping"] for o in outs] == [0.0, 0.0, 0.0, 0.0]
    assert [o["length_ratio"] for o in outs] == [(len(p), len(d["answer"])) for p, d in zip(cleaned, docs)]
    assert task_hooks.corpus_distinct([o["distinct"] for o in outs]) == 1.0
    assert task_hooks.corpus_length_ratio([o["length_ratio"] for o in outs]) == pytest.approx(
        sum(map(len, cleaned)) / sum(len(d["answer"]) for d in docs))
    loop = task_hooks.process_gen(docs[0], ["行政法规的规定、" * 8 + "<|im_end|>"])
    assert loop["looping"] == 1.0 and loop["distinct"] == "行政法规的规定、" * 8
    assert health.is_looping(loop["distinct"]) and loop["length_ratio"] == (64, len(docs[0]["answer"]))


def test_process_bpb_counts_and_lm_eval_aggregation():
    from lm_eval.api.metrics import bits_per_byte, weighted_perplexity

    from soaes_bench.metrics.chinese import tokenize_words

    docs = [{"text": "国有资产属于国家所有。"}, {"text": "The river flows, quietly."}]
    lls = [-30.0, -45.5]
    outs = [task_hooks.process_bpb(d, [ll]) for d, ll in zip(docs, lls)]
    assert outs[0]["bits_per_byte"] == (-30.0, 33)  # 11 CJK characters x 3 bytes
    assert outs[1]["word_perplexity"] == (-45.5, 4)  # punctuation is not a word
    assert outs[0]["word_perplexity"][1] == len(tokenize_words(docs[0]["text"]))
    n_bytes = 33 + len(docs[1]["text"])
    assert bits_per_byte([o["bits_per_byte"] for o in outs]) == pytest.approx(75.5 / n_bytes / math.log(2))
    assert weighted_perplexity([o["byte_perplexity"] for o in outs]) == pytest.approx(math.exp(75.5 / n_bytes))


def test_loader_ignores_metadata_and_names_missing_files(tmp_path):
    copy = _fixture_copy(tmp_path / "t")
    import importlib.util

    spec = importlib.util.spec_from_file_location("soaes_test_utils", copy / "soaes_general" / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    ds = utils.load(data_file="general_mc.jsonl", version=1, pretrained="/some/model", config_source="x.yaml")
    assert list(ds) == ["test"] and ds["test"][0]["id"] == "gmc-0001"
    (copy / "soaes_general" / "data" / "general_mc.jsonl").unlink()
    with pytest.raises(UserError, match="general_mc.jsonl: evaluation data not found"):
        utils.load(data_file="general_mc.jsonl")


def test_shipped_data_follow_the_design_schemas(loaded):
    for name in ALL_TASKS:
        task = loaded["tasks"][name]
        kind = task.OUTPUT_TYPE
        for doc in task.eval_docs:
            assert isinstance(doc["id"], str) and doc["id"]
            if kind == "loglikelihood_rolling":
                assert isinstance(doc["text"], str) and doc["text"].strip()
            elif kind == "multiple_choice":
                assert len(doc["choices"]) == 4 and doc["answer"] in (0, 1, 2, 3)
            else:
                assert doc["question"].strip() and doc["answer"].strip()
