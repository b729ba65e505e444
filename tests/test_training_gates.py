"""Gate predicates on results dicts (pure) and the gate.json / gate.md report."""

import json

import pytest

from soaes_bench.config import from_dict
from soaes_bench.errors import UserError
from soaes_bench.training.gates import Check, check_one, evaluate_gate, metric_value, write_gate


def _res(task, metric, value, stderr=None, section="tasks"):
    return {section: {task: {"metrics": {metric: {"value": value, "stderr": stderr}}}}}


def test_absolute_threshold_and_ops():
    r = _res("t", "acc", 0.5, stderr=0.1)
    assert check_one(Check("c", "acc", "t", ">=", threshold=0.5), r, {})["passed"]
    assert not check_one(Check("c", "acc", "t", ">", threshold=0.5), r, {})["passed"]
    assert check_one(Check("c", "acc", "t", "<", threshold=0.6), r, {})["passed"]
    row = check_one(Check("c", "acc", "t", "<=", threshold=0.4), r, {})
    assert not row["passed"] and row["ci"] == pytest.approx([0.5 - 0.196, 0.5 + 0.196])


def test_relative_to_reference_with_margin():
    base = _res("soaes_domain_bpb", "bits_per_byte", 3.0)
    now = _res("soaes_domain_bpb", "bits_per_byte", 2.9)
    gain = Check("gain", "bits_per_byte", "soaes_domain_bpb", "<=", reference="base", margin=-0.05)
    row = check_one(gain, now, {"base": base})
    assert row["passed"] and row["threshold"] == pytest.approx(2.95) and row["reference_value"] == 3.0
    assert not check_one(gain, _res("soaes_domain_bpb", "bits_per_byte", 2.97), {"base": base})["passed"]


def test_groups_are_found_and_missing_values_fail_with_a_note():
    r = _res("soaes_domain", "acc", 0.3, section="groups")
    assert metric_value(r, "soaes_domain", "acc") == (0.3, None)
    row = check_one(Check("c", "rouge1", "soaes_domain", ">=", threshold=0.0), r, {})
    assert not row["passed"] and "missing in results" in row["note"]
    row = check_one(Check("c", "acc", "soaes_domain", ">=", reference="base"), r, {})
    assert not row["passed"] and "not available" in row["note"]


def test_check_needs_exactly_one_bound():
    with pytest.raises(UserError, match="exactly one of threshold and reference"):
        from_dict(Check, {"name": "c", "metric": "m", "task": "t"}, "gates.yaml")
    with pytest.raises(UserError, match="op: must be one of"):
        from_dict(Check, {"name": "c", "metric": "m", "task": "t", "op": "=>", "threshold": 1}, "gates.yaml")


def test_report_files(tmp_path):
    checks = [Check("a", "acc", "t", ">=", threshold=0.2), Check("b", "acc", "t", ">=", threshold=0.9)]
    rep = evaluate_gate("sft", checks, _res("t", "acc", 0.5), {}, "x/results.json")
    assert rep["schema"] == "soaes-bench/gate" and rep["phase"] == "sft" and not rep["passed"]
    assert [c["passed"] for c in rep["checks"]] == [True, False]
    write_gate(rep, tmp_path)
    assert json.loads((tmp_path / "gate.json").read_text())["passed"] is False
    md = (tmp_path / "gate.md").read_text()
    assert "FAILED" in md and "| b | t | acc | 0.5 | >= | 0.9 |" in md
    assert evaluate_gate("cpt", [], {}, {})["passed"]


def test_ratio_scales_the_reference_before_the_margin():
    base = _res("soaes_general_mc", "acc", 0.40)
    keep = Check("retention", "acc", "soaes_general_mc", ">=", reference="base", ratio=0.9)
    row = check_one(keep, _res("soaes_general_mc", "acc", 0.37), {"base": base})
    assert row["threshold"] == pytest.approx(0.36) and row["ratio"] == 0.9 and row["passed"]  # 0.40 * 0.9
    assert not check_one(keep, _res("soaes_general_mc", "acc", 0.35), {"base": base})["passed"]
    both = Check("both", "acc", "soaes_general_mc", ">=", reference="base", ratio=0.9, margin=-0.02)
    row = check_one(both, _res("soaes_general_mc", "acc", 0.35), {"base": base})
    assert row["threshold"] == pytest.approx(0.34) and row["passed"]  # 0.40 * 0.9 - 0.02
    bpb = Check("bpb", "bits_per_byte", "t", "<=", reference="base", ratio=1.05)
    row = check_one(bpb, _res("t", "bits_per_byte", 2.11), {"base": _res("t", "bits_per_byte", 2.0)})
    assert row["threshold"] == pytest.approx(2.1) and not row["passed"]  # lower is better: at most 5% worse
    plain = check_one(Check("p", "acc", "soaes_general_mc", ">=", reference="base"), base, {"base": base})
    assert plain["threshold"] == 0.40 and plain["ratio"] is None and plain["passed"]  # no ratio = 1


def test_ratio_is_shown_in_gate_md(tmp_path):
    keep = Check("retention", "acc", "t", ">=", reference="base", ratio=0.9)
    rep = evaluate_gate("cpt", [keep], _res("t", "acc", 0.5), {"base": _res("t", "acc", 0.5)})
    write_gate(rep, tmp_path)
    assert "| retention | t | acc | 0.5 | >= | 0.45 | base (0.5) × 0.9 +0 | pass |" in (tmp_path / "gate.md").read_text()


def test_ratio_without_reference_or_not_positive_is_refused_naming_the_gate():
    with pytest.raises(ValueError, match="gate 'keep': ratio needs a reference"):
        Check("keep", "acc", "t", ">=", threshold=0.3, ratio=0.9)
    with pytest.raises(UserError, match=r"gates.yaml: top level: gate 'keep': ratio needs a reference"):
        from_dict(Check, {"name": "keep", "metric": "acc", "task": "t", "threshold": 0.3, "ratio": 0.9}, "gates.yaml")
    with pytest.raises(UserError, match="ratio: must be > 0"):
        from_dict(Check, {"name": "k", "metric": "acc", "task": "t", "reference": "base", "ratio": 0}, "gates.yaml")


def test_recipe_with_unknown_gate_key_is_refused_with_a_suggestion(tmp_path):
    from soaes_bench.config import load_dataclass
    from soaes_bench.training.pipeline import PipelineRecipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\ncpt:\n  gates:\n    - {name: keep, task: soaes_general_mc, metric: acc, op: '>=',\n"
                      "       reference: base, ration: 0.9}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"r\.yaml: cpt\.gates\[0\]\.ration: unknown key \(did you mean ratio\?\)"):
        load_dataclass(PipelineRecipe, recipe)
    recipe.write_text("name: t\ncpt:\n  gates:\n    - {name: keep, task: soaes_general_mc, metric: acc, threshold: 0.3,"
                      " ratio: 0.9}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"r\.yaml: cpt\.gates\[0\]: gate 'keep': ratio needs a reference"):
        load_dataclass(PipelineRecipe, recipe)
