"""The content-free model (soaes_bench.evaluation.constant): a run of it scores exactly the floors that
soaes_bench.evaluation.task_floors computes from the task data, and gates judged on it fail."""

from types import SimpleNamespace

import pytest

from soaes_bench import cli
from soaes_bench.evaluation import constant
from soaes_bench.evaluation import writer
from soaes_bench.io import read_json, read_jsonl
from soaes_bench.evaluation import task_floors
from soaes_bench.metrics import floors


def _req(task, idx, args, doc=None):
    return SimpleNamespace(task_name=task, idx=idx, args=args, doc=doc or {})


def test_requests_by_hand():
    lm = constant.ConstantLM("答", positions={"mc": 2, "long": constant.LONGEST}, answers={"echo": constant.ECHO})
    ll = lm.loglikelihood([_req("x", 0, ("q", " A")), _req("x", 1, ("q", "中文"))])
    assert ll == [(pytest.approx(-2 * floors.NATS_PER_BYTE), False), (pytest.approx(-6 * floors.NATS_PER_BYTE), False)]
    assert [r[0] for r in lm.loglikelihood([_req("mc", i, ("q", "x")) for i in range(4)])] == [-1.0, -1.0, 0.0, -1.0]
    doc = {"choices": ["a", "ccc", "bb", "ccc"]}  # longest: the first of the two longest
    assert [r[1] for r in lm.loglikelihood([_req("long", i, ("q", "x"), doc) for i in range(4)])] == [
        False, True, False, False]
    assert lm.loglikelihood_rolling([_req("t", 0, ("abc",))]) == [pytest.approx(-3 * floors.NATS_PER_BYTE)]
    gen = lm.generate_until([_req("g", 0, ("q", {})), _req("echo", 0, ("q", {}), {"question": "问题一"})])
    assert gen == ["答", "问题一"]


def test_floor_run_scores_the_best_floors_of_the_task_data(tmp_path):
    tasks = ["soaes_domain_mc", "soaes_general_mc_cloze", "soaes_domain_knowledge", "soaes_domain_bpb"]
    res = constant.evaluate_constant(constant.floor_lm(tasks, limit=40), tasks=tasks, limit=40)
    written = writer.write_run(res, tmp_path)
    for task, metric in (("soaes_domain_mc", "acc"), ("soaes_general_mc_cloze", "cloze_acc"),
                         ("soaes_domain_knowledge", "rouge1")):
        name, value = task_floors.task_floors(task, limit=40)["best"][metric].values()
        assert written["tasks"][task]["metrics"][metric]["value"] == pytest.approx(value), (task, name)
    assert written["tasks"]["soaes_domain_bpb"]["metrics"]["bits_per_byte"]["value"] == pytest.approx(8.0)
    assert written["model"]["name"] == "content-free floor" and written["model"]["n_params"] == 0
    rows = read_jsonl(tmp_path / "samples" / "soaes_domain_knowledge.jsonl")
    assert all(r["prediction"] for r in rows)  # the question copied, item by item


def test_run_with_constant_model_writes_a_normal_run(tmp_path, capsys):
    out = tmp_path / "const"
    assert cli.main(["run", "--model", "constant:", "--tasks", "soaes_domain_mc", "--limit", "20",
                     "--output", str(out)]) == 0
    res = read_json(out / "results.json")
    t = res["tasks"]["soaes_domain_mc"]
    assert t["positions"]["top"] == "A" and t["positions"]["top_share"] == 1.0  # first option on ties
    assert "warning: soaes_domain_mc" in capsys.readouterr().err


def test_pipeline_floor_reference_is_written_once_and_stands_for_plain_tasks(tmp_path):
    from pathlib import Path

    from soaes_bench.config import load_dataclass
    from soaes_bench.phase_eval import evaluate_floor
    from soaes_bench.pipeline_recipe import FLOOR, PipelineRecipe, _references_known

    where = tmp_path / FLOOR / "eval"
    res = evaluate_floor(["soaes_domain_mc"], 40, where)
    assert set(res["tasks"]) == {"soaes_domain_mc", "soaes_domain_mc@plain"}
    best = task_floors.task_floors("soaes_domain_mc", limit=40)["best"]["acc"]["value"]
    assert res["tasks"]["soaes_domain_mc@plain"]["metrics"]["acc"]["value"] == pytest.approx(best)
    assert res["tasks"]["soaes_domain_mc"]["results_path"] == str(where / "results.json")
    stamp = (where / "results.json").stat().st_mtime_ns
    assert evaluate_floor(["soaes_domain_mc"], 40, where) == res and (where / "results.json").stat().st_mtime_ns == stamp
    recipe = load_dataclass(PipelineRecipe, Path(__file__).resolve().parents[1] / "training/recipes/reference.yaml")
    assert FLOOR in _references_known(recipe, "sft")
