"""Multiple choice in three forms (letter, cloze, circular) and the distribution of predicted positions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from soaes_bench import results
from soaes_bench.evaluation import run as run_mod
from soaes_bench.evaluation import task_hooks, writer
from soaes_bench.paths import tasks_dir

FIXTURES = Path(__file__).parent / "fixtures" / "tasks_data"
FORMS = {"": {"acc", "acc_norm"}, "_cloze": {"cloze_acc", "cloze_acc_norm"},
         "_circular": {"circular_acc", "rotation_acc"}}
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _manager(path):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(path)], include_defaults=False)


@pytest.fixture(scope="module")
def loaded(fixture_tasks):
    names = [f"soaes_{s}_mc{f}" for s in ("general", "domain") for f in FORMS]
    return _manager(fixture_tasks).load(names)["tasks"]


def _docs(suite="domain"):
    return [json.loads(line) for line in (FIXTURES / f"soaes_{suite}" / f"{suite}_mc.jsonl").open(encoding="utf-8")]


def _requests(task, chat: bool):
    def render(messages, add_generation_prompt=True):
        import jinja2

        return jinja2.Template(CHATML).render(messages=messages, add_generation_prompt=add_generation_prompt)

    task.build_all_requests(limit=None, rank=0, world_size=1, apply_chat_template=chat,
                            chat_template=render if chat else None)
    return task.instances


# --- task configs ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suite", ["general", "domain"])
def test_each_form_is_its_own_versioned_task_on_the_same_data_with_its_own_metric_names(suite):
    tm = _manager(tasks_dir())
    for form, metrics in FORMS.items():
        cfg = tm.task_index[f"soaes_{suite}_mc{form}"].cfg
        assert cfg["dataset_kwargs"]["data_file"] == f"{suite}_mc.jsonl"
        assert cfg["metadata"]["version"] == 1
    loaded = tm.load([f"soaes_{suite}_mc{f}" for f in FORMS])["tasks"]
    for form, metrics in FORMS.items():
        assert set(loaded[f"soaes_{suite}_mc{form}"].aggregation()) == metrics


def test_rotations_keep_the_answer_text_and_the_original_id():
    doc = _docs()[0]
    rotated = [task_hooks.rotate(doc, k) for k in range(4)]
    assert [r["id"] for r in rotated] == [f"{doc['id']}@r{k}" for k in range(4)]
    assert all(r["item"] == doc["id"] and r["question"] == doc["question"] for r in rotated)
    assert rotated[0]["choices"] == doc["choices"] and rotated[0]["answer"] == doc["answer"]
    assert all(r["choices"][r["answer"]] == doc["choices"][doc["answer"]] for r in rotated)
    # every option is shown once at every position over the 4 rotations
    assert [sorted(r["choices"][p] for r in rotated) for p in range(4)] == [sorted(doc["choices"])] * 4
    assert sorted(r["answer"] for r in rotated) == [0, 1, 2, 3]


def test_circular_task_expands_items_in_order_with_unique_ids_and_the_letter_prompt(loaded):
    docs = _docs()
    circ, letter = loaded["soaes_domain_mc_circular"], loaded["soaes_domain_mc"]
    ids = [d["id"] for d in circ.eval_docs]
    assert ids == [f"{d['id']}@r{k}" for d in docs for k in range(4)]
    assert [d["item"] for d in circ.eval_docs] == [d["id"] for d in docs for _ in range(4)]
    for i, doc in enumerate(letter.eval_docs):  # rotation 0 is the letter form's item, prompt and target
        assert circ.doc_to_text(circ.eval_docs[4 * i]) == letter.doc_to_text(doc)
        assert circ.doc_to_target(circ.eval_docs[4 * i]) == letter.doc_to_target(doc)
    r1 = circ.eval_docs[1]
    assert f"\nA. {docs[0]['choices'][1]}\n" in circ.doc_to_text(r1)


def test_cloze_prompt_has_no_options_and_the_continuation_is_the_option_text(loaded):
    task = loaded["soaes_domain_mc_cloze"]
    doc = task.eval_docs[0]
    assert task.doc_to_text(doc) == f"问题：{doc['question']}\n答案："
    plain = _requests(task, chat=False)
    assert [i.args for i in plain[:4]] == [(f"问题：{doc['question']}\n答案：", c) for c in doc["choices"]]
    assert not any(f"A. {c}" in i.args[0] for i in plain for c in doc["choices"])
    chat = _requests(task, chat=True)
    assert [i.args[1] for i in chat[:4]] == doc["choices"]
    assert all(i.args[0].endswith("答案：<|im_end|>\n<|im_start|>assistant\n") for i in chat)


def test_cloze_hook_is_lm_evals_acc_and_acc_bytes(fixture_tasks):
    """cloze_acc = lm-eval's built-in acc, cloze_acc_norm = its acc_bytes (not its acc_norm: characters)."""
    (fixture_tasks / "soaes_domain" / "builtin_cloze.yaml").write_text(
        "include: _mc_cloze_template_yaml\ntask: builtin_cloze\ndataset_kwargs:\n  data_file: domain_mc.jsonl\n"
        "process_results: null\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n  - metric: acc_bytes\n",
        encoding="utf-8")
    try:
        task = _manager(fixture_tasks).load(["builtin_cloze"])["tasks"]["builtin_cloze"]
    finally:
        (fixture_tasks / "soaes_domain" / "builtin_cloze.yaml").unlink()
    rng = np.random.default_rng(0)
    mixed = {"id": "x", "question": "q", "answer": 1, "choices": ["ab", "国有资产", "1", "x"]}
    docs = list(task.eval_docs) + [mixed]
    differ = 0
    for doc in docs:
        for _ in range(200):
            lls = rng.normal(-20, 8, size=4)
            res = [(float(x), False) for x in lls]
            builtin, ours = task.process_results(doc, res), task_hooks.process_mc_cloze(doc, res)
            assert ours == {"cloze_acc": builtin["acc"], "cloze_acc_norm": builtin["acc_bytes"]}
            differ += builtin["acc_bytes"] != builtin["acc_norm"]
    assert differ > 0  # the mixed-script item tells bytes from characters


def test_circular_accuracy_needs_every_rotation():
    docs = [task_hooks.rotate(d, k) for d in _docs() for k in range(4)]
    always_a = [task_hooks.process_mc_circular(d, [(0.0, True), (-1.0, False), (-1.0, False), (-1.0, False)])
                for d in docs]
    assert sum(o["rotation_acc"] for o in always_a) / len(docs) == 0.25  # one rotation in four has the answer at A
    assert task_hooks.circular_accuracy([o["circular_acc"] for o in always_a]) == 0.0

    def knows(d):  # a model that picks the gold option wherever it is shown
        return [(0.0 if i == d["answer"] else -5.0, True) for i in range(4)]

    perfect = [task_hooks.process_mc_circular(d, knows(d)) for d in docs]
    assert task_hooks.circular_accuracy([o["circular_acc"] for o in perfect]) == 1.0
    mixed = [o if d["item"] != docs[0]["item"] or d["rotation"] != 2 else a
             for d, o, a in zip(docs, perfect, always_a)]
    n_items = len(docs) // 4
    assert task_hooks.circular_accuracy([o["circular_acc"] for o in mixed]) == pytest.approx((n_items - 1) / n_items)
    assert task_hooks.circular_accuracy([]) != task_hooks.circular_accuracy([])  # NaN when nothing was scored


# --- samples rows, positions, warnings ----------------------------------------------------------------------------
def _mc_sample(doc_id, doc, lls, target, conts=(" A", " B", " C", " D"), metrics=None):
    s = {"doc_id": doc_id, "doc": doc, "target": target, "arguments": [("ctx", c) for c in conts],
         "filtered_resps": [(ll, False) for ll in lls], "metrics": list(metrics or {})}
    s.update(metrics or {})
    return s


def test_sample_rows_record_predicted_and_gold_positions():
    row = writer.sample_row(_mc_sample(0, {"id": "q1"}, [-3, -1, -2, -1], 2, metrics={"acc": 0.0}))
    assert (row["pred_index"], row["target_index"], row["prediction"], row["target"]) == (1, 2, "B", "C")
    assert "pred_index_norm" not in row and "item" not in row
    # cloze: option texts of different byte lengths also get the per-byte argmax (acc_norm's prediction)
    cloze = writer.sample_row(_mc_sample(0, {"id": "q1"}, [-6.0, -9.0, -30.0, -9.0], 2,
                                         conts=("甲", "乙丙", "国有资产监督管理", "ab")))
    assert (cloze["pred_index"], cloze["pred_index_norm"], cloze["prediction"]) == (0, 2, "甲")
    circ = writer.sample_row(_mc_sample(5, {"id": "q1@r1", "item": "q1"}, [0, -1, -1, -1], 3,
                                        metrics={"rotation_acc": 0.0, "circular_acc": ("q1", 0.0)}))
    assert circ["id"] == "q1@r1" and circ["item"] == "q1"
    assert circ["metrics"] == {"rotation_acc": 0.0, "circular_acc": 0.0}


def test_positions_block():
    rows = [{"pred_index": p, "target_index": t} for p, t in [(0, 0), (0, 1), (0, 2), (3, 3), (0, 0)]]
    pos = writer.positions(rows, 4)
    assert pos == {"shares": {"A": 0.8, "B": 0.0, "C": 0.0, "D": 0.2}, "top": "A", "top_share": 0.8, "n": 5,
                   "target_shares": {"A": 0.4, "B": 0.2, "C": 0.2, "D": 0.2}}
    assert writer.positions([{"prediction": "x"}]) is None  # not multiple choice
    rows[1]["pred_index_norm"] = 1
    assert writer.positions(rows, 4)["norm"] == {"shares": {"A": 0.6, "B": 0.2, "C": 0.0, "D": 0.2}, "top": "A",
                                                 "top_share": 0.6}
    tie = writer.positions([{"pred_index": 1}, {"pred_index": 2}], 4)
    assert tie["top"] == "B" and tie["target_shares"] is None


def test_build_results_adds_positions_and_results_md_shows_them(tmp_path):
    docs = _docs()
    samples = [_mc_sample(i, d, [0.0, -1.0, -2.0, -3.0], d["answer"], metrics={"acc": float(d["answer"] == 0)})
               for i, d in enumerate(docs)]
    lm_out = {"results": {"soaes_domain_mc": {"acc,none": 0.5, "acc_stderr,none": 0.1}},
              "configs": {"soaes_domain_mc": {"output_type": "multiple_choice"}},
              "versions": {"soaes_domain_mc": 1}, "samples": {"soaes_domain_mc": samples}}
    res = writer.build_results(lm_out, task_groups={}, model={"name": "m"}, env={}, suite="custom", seed=1,
                               limit=None)
    pos = res["tasks"]["soaes_domain_mc"]["positions"]
    assert pos["shares"]["A"] == 1.0 and pos["top"] == "A" and pos["n"] == len(docs)
    written = writer.write_run(res, tmp_path)
    assert results.validate(json.loads((tmp_path / "results.json").read_text()), "x") == "eval"
    md = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "### Predicted positions" in md
    assert "| soaes_domain_mc | 3 | 1.000 | 0.000 | 0.000 | 0.000 | A | 1.000 |" in md
    assert written["tasks"]["soaes_domain_mc"]["positions"] == pos


def test_position_warnings_name_the_task_and_the_letter_above_half():
    def res(**shares):
        return {"tasks": {name: {"positions": {"top": top, "top_share": s, "n": 240,
                                               "target_shares": {"A": 0.3, "D": 0.25}}}
                          for name, (top, s) in shares.items()} | {"gen": {"metrics": {}}}}

    assert run_mod.position_warnings(res(t1=("A", 0.5), t2=("B", 0.3))) == []
    lines = run_mod.position_warnings(res(t1=("A", 0.97), t2=("D", 0.51)))
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert "t1: 97% of 240 predictions are option A, gold answers there 30%" in lines[0]
    assert lines[1].startswith("soaes-bench run: warning: t2: 51%") and "option D" in lines[1]
    assert run_mod.position_warnings(res(t1=("A", 0.6)), threshold=0.7) == []


# --- paired comparison per original item ---------------------------------------------------------------------------
def _circular_run(tmp_path: Path, name: str, right: dict[str, list[int]]) -> Path:
    """A results.json with a circular task; right[item] = 0/1 per rotation."""
    rows = []
    for item, per_rot in right.items():
        for k, c in enumerate(per_rot):
            rows.append({"id": f"{item}@r{k}", "doc_id": len(rows), "item": item, "target": "A", "prediction": "A",
                         "metrics": {"rotation_acc": float(c), "circular_acc": float(c)}})
    n_items = len(right)
    circ = sum(all(v) for v in right.values()) / n_items
    rot = sum(sum(v) for v in right.values()) / len(rows)
    out = tmp_path / name
    (out / "samples").mkdir(parents=True)
    task = "soaes_domain_mc_circular"
    (out / "samples" / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    res = {"schema": "soaes-bench/results", "schema_version": 1, "kind": "eval", "model": {"name": name},
           "tasks": {task: {"group": "soaes_domain", "version": 1, "config_sha256": "c", "n": len(rows),
                            "output_type": "multiple_choice",
                            "higher_is_better": {"circular_acc": True, "rotation_acc": True},
                            "metrics": {"circular_acc": {"value": circ, "stderr": None},
                                        "rotation_acc": {"value": rot, "stderr": 0.05}},
                            "samples": f"samples/{task}.jsonl"}}, "groups": {}}
    (out / "results.json").write_text(json.dumps(res), encoding="utf-8")
    return out / "results.json"


def test_load_samples_and_compare_pair_circular_acc_by_original_item(tmp_path):
    from soaes_bench.reporting.compare import compare

    items = [f"q{i}" for i in range(12)]
    a = _circular_run(tmp_path, "a", {q: [1, 1, 1, 1] if i < 6 else [1, 0, 1, 1] for i, q in enumerate(items)})
    b = _circular_run(tmp_path, "b", {q: [1, 1, 1, 1] if i < 3 else [0, 1, 1, 1] for i, q in enumerate(items)})
    s = results.load_samples(a, "soaes_domain_mc_circular")
    assert list(s["id"]) == items and s["id"].is_unique and set(s["rotations"]) == {4}
    assert list(s["circular_acc"]) == [1.0] * 6 + [0.0] * 6  # min over rotations
    assert list(s["rotation_acc"]) == [1.0] * 6 + [0.75] * 6  # share of rotations right
    assert s["circular_acc"].mean() == pytest.approx(0.5) and s["rotation_acc"].mean() == pytest.approx(0.875)
    df = compare([a, b], resamples=200).set_index("metric")
    circ = df.loc["circular_acc"]
    assert circ.n_shared == 12 and circ["diff"] == pytest.approx(0.25 - 0.5)  # 12 items, not 48 rotations
    assert circ.ci_method == "paired-bootstrap"
    assert circ.p_mcnemar == pytest.approx(0.25)  # 3 discordant items, all one way: 2 * 0.5**3
    rot = df.loc["rotation_acc"]  # per-item share of rotations, resampled by item; no McNemar (not 0/1)
    assert rot.n_shared == 12 and np.isnan(rot.p_mcnemar) and rot["diff"] == pytest.approx(0.8125 - 0.875)
    assert "circular_acc" in results.ACCURACY_METRICS and "rotation_acc" not in results.ACCURACY_METRICS


def test_config_hash_of_a_process_docs_task_does_not_depend_on_memory_addresses(loaded):
    """lm-eval copies `process_docs` into the nested fewshot_config as a function object; its str() has an address
    that changes every run, which made `compare`/`check` refuse two runs of the circular task."""
    cfg = loaded["soaes_domain_mc_circular"].dump_config()
    assert callable(cfg["fewshot_config"]["process_docs"])
    text = json.dumps(cfg, sort_keys=True, ensure_ascii=False, default=writer._stable_json)
    assert " at 0x" not in text and "def circular_docs(dataset):" in text
    clone = json.loads(json.dumps(cfg, default=writer._stable_json))  # the same config, the hook as its source
    assert writer.config_sha256(clone) == writer.config_sha256(cfg)
