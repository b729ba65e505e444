"""Gate predicates on results dicts (pure), statistical checks on per-item samples (superior, non-inferior, Holm,
MDE), the refusal of vacuous gates, the gate.json / gate.md report and `soaes-bench gate`."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures.reporting_runs import make_results

from soaes_bench import cli, results, stats
from soaes_bench.config import from_dict, load_dataclass
from soaes_bench.errors import UserError
from soaes_bench.pipeline_recipe import PipelineRecipe, validate
from soaes_bench.reporting import gates
from soaes_bench.reporting.compare import paired_stats
from soaes_bench.reporting.gates import (check_one, evaluate_gate, gate_markdown, load_run, metric_value, refuse_vacuous,
                                         vacuity, write_gate)
from soaes_bench.training.gate_spec import Check

REPO = Path(__file__).resolve().parents[1]


def _res(task, metric, value, stderr=None, section="tasks"):
    return {section: {task: {"metrics": {metric: {"value": value, "stderr": stderr}}}}}


def test_absolute_threshold_and_ops():
    r = _res("t", "acc", 0.5, stderr=0.1)
    assert check_one(Check("c", "acc", "t", ">=", threshold=0.5), r, {})["passed"]
    assert not check_one(Check("c", "acc", "t", ">", threshold=0.5), r, {})["passed"]
    assert check_one(Check("c", "acc", "t", "<", threshold=0.6), r, {})["passed"]
    row = check_one(Check("c", "acc", "t", "<=", threshold=0.4), r, {})
    half = 0.1 * stats.normal_z(0.95)  # z_{0.975} = 1.959964
    assert not row["passed"] and row["ci"] == pytest.approx([0.5 - half, 0.5 + half])


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
    # no samples, no stderr: the statistics columns (n, diff, p, p Holm, MDE) show "–"
    md = (tmp_path / "gate.md").read_text()
    assert "| retention | t | acc | 0.5 | >= | 0.45 | base (0.5) × 0.9 +0 | – | – | – | – | – | pass |" in md


def test_ratio_without_reference_or_not_positive_is_refused_naming_the_gate():
    with pytest.raises(ValueError, match="gate 'keep': ratio needs a reference"):
        Check("keep", "acc", "t", ">=", threshold=0.3, ratio=0.9)
    with pytest.raises(UserError, match=r"gates.yaml: top level: gate 'keep': ratio needs a reference"):
        from_dict(Check, {"name": "keep", "metric": "acc", "task": "t", "threshold": 0.3, "ratio": 0.9}, "gates.yaml")
    with pytest.raises(UserError, match="ratio: must be > 0"):
        from_dict(Check, {"name": "k", "metric": "acc", "task": "t", "reference": "base", "ratio": 0}, "gates.yaml")


def test_recipe_with_unknown_gate_key_is_refused_with_a_suggestion(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\ncpt:\n  gates:\n    - {name: keep, task: soaes_general_mc, metric: acc, op: '>=',\n"
                      "       reference: base, ration: 0.9}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"r\.yaml: cpt\.gates\[0\]\.ration: unknown key \(did you mean ratio\?\)"):
        load_dataclass(PipelineRecipe, recipe)
    recipe.write_text("name: t\ncpt:\n  gates:\n    - {name: keep, task: soaes_general_mc, metric: acc, threshold: 0.3,"
                      " ratio: 0.9}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"r\.yaml: cpt\.gates\[0\]: gate 'keep': ratio needs a reference"):
        load_dataclass(PipelineRecipe, recipe)


# statistical checks, MDE, Holm, vacuous gates, `soaes-bench gate` ----------------------------------------------


def _acc(n, right):
    """Per-item accuracy: 1 for the items in `right`, else 0."""
    right = set(right)
    return [1.0 if i in right else 0.0 for i in range(n)]


def _bpb_items(n, shift=0.0):
    """(loglikelihood, bytes) per item, 100 bytes each; `shift` nats more NLL per item (worse when > 0)."""
    return [[-(700.0 + 10 * (i % 5)) - shift, 100] for i in range(n)]


def _runs(tmp_path, ref_tasks, model_tasks):
    make_results(tmp_path / "ref", "ref", ref_tasks)
    make_results(tmp_path / "model", "model", model_tasks)
    return load_run(tmp_path / "model"), load_run(tmp_path / "ref")


@pytest.mark.parametrize("spec, message", [
    ({"test": "superior"}, "test superior needs a reference"),
    ({"test": "superior", "threshold": 0.3}, "test superior needs a reference"),
    ({"test": "superior", "reference": "base", "op": ">"}, "takes no op"),
    ({"test": "superior", "reference": "base", "margin": 0.1}, "superior takes no margin"),
    ({"test": "superior", "reference": "base", "ratio": 0.9}, "takes no ratio"),
    ({"test": "non_inferior", "reference": "base"}, r"needs margin > 0 .*got 0.0"),
    ({"test": "non_inferior", "reference": "base", "margin": -0.1}, "needs margin > 0"),
    ({"test": "non_inferior", "reference": "base", "margin": float("nan")}, "margin must be a finite number, got nan"),
    ({"test": "non_inferior", "reference": "base", "margin": float("inf")}, "margin must be a finite number"),
    ({"test": "equal", "reference": "base"}, "test: must be one of"),
    ({"threshold": float("nan")}, "threshold must be a finite number"),
    ({"test": "superior", "reference": "base", "metric": "length_ratio"}, "length_ratio has no better direction"),
])
def test_statistical_check_syntax_is_validated_naming_the_gate(spec, message):
    with pytest.raises(UserError, match=message):
        from_dict(Check, {"name": "g", "task": "t", "metric": "acc", **spec}, "r.yaml")


def test_check_kinds_load_from_yaml_and_nan_margins_are_refused(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\ncpt:\n  gates:\n"
                      "    - {name: a, task: soaes_domain_mc, metric: acc, test: superior, reference: base}\n"
                      "    - {name: b, task: soaes_general_zh_bpb, metric: bits_per_byte, test: non_inferior,"
                      " margin: 0.05, reference: base}\n"
                      "    - {name: c, task: soaes_domain_mc, metric: acc, reference: base}\n", encoding="utf-8")
    a, b, c = load_dataclass(PipelineRecipe, recipe).cpt.gates
    assert (a.test, a.op, b.test, b.margin, c.test, c.op) == ("superior", None, "non_inferior", 0.05, None, ">=")
    recipe.write_text("name: t\ncpt:\n  gates:\n    - {name: k, task: t, metric: acc, test: non_inferior,"
                      " margin: .nan, reference: base}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"cpt\.gates\[0\]: gate 'k': margin must be a finite number, got nan"):
        load_dataclass(PipelineRecipe, recipe)


def test_the_committed_reference_recipe_still_validates():
    path = REPO / "training" / "recipes" / "reference.yaml"
    validate(load_dataclass(PipelineRecipe, path), str(path))


@pytest.mark.parametrize("gate, why", [
    ({"task": "cpt_val", "metric": "val_loss_domain", "reference": "base_val"}, "measured by the phase itself"),
    ({"task": "soaes_domain_mc", "metric": "acc", "reference": "base_val"}, "computed by the phase itself"),
])
def test_statistical_checks_without_samples_are_refused_up_front(tmp_path, gate, why):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "cpt": {"gates": [dict(gate, name="g", test="superior")]}}))
    with pytest.raises(UserError, match=f"check 'g': test superior needs per-item samples.*{why}"):
        validate(load_dataclass(PipelineRecipe, path), str(path))
    path.write_text(yaml.safe_dump({"name": "x", "evaluation": None, "cpt": {"gates": [
        {"name": "g", "task": "soaes_domain_mc", "metric": "acc", "test": "superior", "reference": "previous"}]}}))
    with pytest.raises(UserError, match="evaluation is null"):
        validate(load_dataclass(PipelineRecipe, path), str(path))


def test_superior_pairs_items_by_id_and_agrees_with_compare(tmp_path):
    n = 40
    base, better = _acc(n, range(10)), _acc(n, range(18))  # 0.25 -> 0.45: 8 items gained, none lost
    model, ref = _runs(tmp_path, {"soaes_domain_mc": {"acc": base}}, {"soaes_domain_mc": {"acc": better}})
    gain = Check("gain", "acc", "soaes_domain_mc", test="superior", reference="base")
    row = check_one(gain, model, {"base": ref})
    assert row["passed"] and row["note"] is None and row["n"] == 40 and row["diff"] == pytest.approx(0.2)
    assert (row["op"], row["threshold"], row["p_null"], row["ci_method"]) == (">", 0.25, "diff <= 0", "paired-bootstrap")
    # the CI is `soaes-bench compare`'s paired bootstrap: same statistic, same draws (read as percentiles: compare
    # itself gives 40 items a BCa interval, stats.interval_method)
    ps = paired_stats(results.load_samples(tmp_path / "ref" / "results.json", "soaes_domain_mc"),
                      results.load_samples(tmp_path / "model" / "results.json", "soaes_domain_mc"), "acc", 2000, 0,
                      method="percentile")
    assert row["diff_ci"] == pytest.approx([ps["ci_low"], ps["ci_high"]]) and row["diff_ci"][0] > 0
    assert row["p"] == pytest.approx(1 / 2001) and row["p_mcnemar"] == pytest.approx(stats.mcnemar_p(0, 8))
    d = np.array(better) - np.array(base)  # 8 ones, 32 zeros: MDE = 2.8016 * SD(d) / sqrt(40)
    assert row["mde"] == pytest.approx(2.801585218 * d.std(ddof=1) / math.sqrt(40))
    # the same items answered alike: d* = 0 in every draw, CI [0, 0] does not clear 0, p = 1
    same = check_one(gain, ref, {"base": ref})
    assert not same["passed"] and same["diff_ci"] == [0.0, 0.0] and same["p"] == 1.0
    assert "95% CI of diff [0, 0] does not clear 0" in same["note"]
    # items are matched by id: the model's samples in another order give the same result
    rows = (tmp_path / "model" / "samples" / "soaes_domain_mc.jsonl").read_text().splitlines()
    (tmp_path / "model" / "samples" / "soaes_domain_mc.jsonl").write_text("\n".join(rows[::-1]) + "\n")
    assert check_one(gain, load_run(tmp_path / "model"), {"base": ref})["diff_ci"] == row["diff_ci"]


def test_bits_per_byte_tests_take_the_lower_is_better_direction(tmp_path):
    # every item 2 nats worse per 100 bytes: each draw's diff is exactly 0.02 / ln 2 = 0.02885 bits per byte
    model, ref = _runs(tmp_path, {"soaes_general_zh_bpb": {"bits_per_byte": _bpb_items(30)}},
                       {"soaes_general_zh_bpb": {"bits_per_byte": _bpb_items(30, shift=2.0)}})
    worse = 0.02 / math.log(2)

    def row(**kw):
        return check_one(Check("g", "bits_per_byte", "soaes_general_zh_bpb", reference="base", **kw), model,
                         {"base": ref})

    kept = row(test="non_inferior", margin=0.05)
    assert kept["passed"] and kept["diff_ci"] == pytest.approx([worse, worse]) and kept["p_null"] == "diff >= 0.05"
    assert (kept["op"], kept["threshold"]) == ("<", pytest.approx(ref["tasks"]["soaes_general_zh_bpb"]["metrics"]
                                                                  ["bits_per_byte"]["value"] + 0.05))
    assert kept["mde"] == pytest.approx(0.0, abs=1e-9)  # no spread in the bootstrap: SE_boot = 0
    assert not row(test="non_inferior", margin=0.02)["passed"]
    assert not row(test="superior")["passed"]  # worse is not superior
    better = check_one(Check("g", "bits_per_byte", "soaes_general_zh_bpb", test="superior", reference="base"), ref,
                       {"base": model})
    assert better["passed"] and better["diff_ci"] == pytest.approx([-worse, -worse]) and better["p_null"] == "diff >= 0"


def test_checks_of_a_phase_are_holm_corrected_and_every_line_has_statistics(tmp_path):
    n, tasks = 40, ("soaes_domain_mc", "soaes_general_mc")
    model, ref = _runs(tmp_path, {t: {"acc": _acc(n, range(10))} for t in tasks},
                       {t: {"acc": _acc(n, range(14))} for t in tasks})  # 4 items gained on each task
    checks = [Check(f"gain-{t}", "acc", t, test="superior", reference="base") for t in tasks]
    alone = [check_one(c, model, {"base": ref}) for c in checks]
    # each alone: CI clear of 0 and one-sided p between 0.0125 and 0.025: passes at 0.025, fails twice that
    assert all(r["passed"] and r["diff_ci"][0] > 0 and 0.0125 < r["p"] <= 0.025 for r in alone)
    point = Check("point", "acc", "soaes_domain_mc", threshold=0.3)
    rep = evaluate_gate("cpt", checks + [point], model, {"base": ref})
    assert rep["family"] == {"method": "holm", "size": 2, "alpha_one_sided": 0.025} and not rep["passed"]
    for r, a in zip(rep["checks"][:2], alone):
        assert r["p"] == a["p"] and r["p_adjusted"] == pytest.approx(2 * a["p"]) and not r["passed"]
        assert r["note"].startswith("Holm-adjusted p 0.03")
    # a point check is outside the family, decided by its bound, and still reports n, diff, CI, p and MDE
    p = rep["checks"][2]
    assert p["passed"] and p["p_adjusted"] is None and p["n"] == 40 and p["diff"] == pytest.approx(0.35 - 0.3)
    assert p["diff_ci"][0] < 0.05 < p["diff_ci"][1] and p["ci_method"] == "bootstrap" and 0 < p["p"] <= 1
    x = np.array(_acc(n, range(14)))
    assert p["mde"] == pytest.approx(stats.power_factor() * x.std(ddof=1) / math.sqrt(n))
    md = gate_markdown(rep)
    assert "| gain-soaes_domain_mc | soaes_domain_mc | acc | 0.35 | superior | diff > 0 | base (0.25) | 40 |" in md
    assert "FAIL: Holm-adjusted p 0.03" in md and "MDE" in md
    # one check alone in its phase: Holm changes nothing
    assert evaluate_gate("cpt", checks[:1], model, {"base": ref})["passed"]


def test_reference_point_checks_report_paired_statistics_and_old_gate_json_renders(tmp_path):
    model, ref = _runs(tmp_path, {"soaes_domain_mc": {"acc": _acc(40, range(10))}},
                       {"soaes_domain_mc": {"acc": _acc(40, range(11))}})
    row = check_one(Check("p", "acc", "soaes_domain_mc", ">=", reference="base"), model, {"base": ref})
    assert row["passed"] and row["n"] == 40 and row["diff"] == pytest.approx(0.025)
    assert row["p_null"] == "diff = 0 (two-sided)" and row["diff_ci"][0] <= 0 and row["p_adjusted"] is None
    old = {"phase": "cpt", "passed": True, "checks": [
        {"name": "domain-mc-gain", "metric": "acc", "task": "soaes_domain_mc", "op": ">=", "threshold": 0.275,
         "reference": "base", "reference_value": 0.275, "margin": 0.0, "ratio": None, "value": 0.2833,
         "ci": [0.226, 0.340], "passed": True, "note": None}]}
    assert ("| domain-mc-gain | soaes_domain_mc | acc | 0.2833 | >= | 0.275 | base (0.275) +0 | – | – | – | – | – "
            "| pass |") in gate_markdown(old)


def test_plain_tasks_pair_with_the_plain_runs(tmp_path):
    for phase, right in (("base", 10), ("cpt", 12)):
        make_results(tmp_path / phase / "eval", phase, {"soaes_domain_mc": {"acc": _acc(40, range(right))}})
        make_results(tmp_path / phase / "eval_plain", phase, {"soaes_general_mc": {"acc": _acc(40, range(right))}})
    base, cpt = load_run(tmp_path / "base"), load_run(tmp_path / "cpt")
    assert set(base["tasks"]) == {"soaes_domain_mc", "soaes_general_mc@plain"}
    assert base["tasks"]["soaes_general_mc@plain"]["results_path"] == str(tmp_path / "base" / "eval_plain" / "results.json")
    assert load_run([tmp_path / "cpt" / "eval" / "results.json", tmp_path / "cpt" / "eval_plain"]) == cpt
    kept = Check("kept", "acc", "soaes_general_mc@plain", test="non_inferior", margin=0.05, reference="base")
    row = check_one(kept, cpt, {"base": base})
    assert row["passed"] and row["n"] == 40 and row["diff"] == pytest.approx(0.05) and row["p_null"] == "diff <= -0.05"


# vacuous gates ---------------------------------------------------------------------------------------------------
A, BYTES = ("always A", 0.25), ("uniform bytes", 8.0)


@pytest.mark.parametrize("check, floor, ref_value, vacuous", [
    (Check("t", "acc", "mc", ">=", threshold=0.2), A, None, True),
    (Check("t", "acc", "mc", ">=", threshold=0.25), A, None, True),  # the floor meets >= 0.25
    (Check("t", "acc", "mc", ">", threshold=0.25), A, None, False),
    (Check("t", "acc", "mc", ">=", threshold=0.3), A, None, False),
    (Check("t", "bits_per_byte", "bpb", "<=", threshold=9.0), BYTES, None, True),
    (Check("t", "bits_per_byte", "bpb", "<=", threshold=3.0), BYTES, None, False),
    (Check("r", "acc", "mc", ">=", reference="base", ratio=0.9), A, 0.229, True),  # bound 0.206 < 0.25
    (Check("r", "acc", "mc", ">=", reference="base", ratio=0.9), A, 0.30, False),  # bound 0.27
    (Check("r", "acc", "mc", ">=", reference="base"), A, None, False),  # reference not known yet: not judged
    (Check("s", "acc", "mc", test="superior", reference="base"), A, 0.229, True),  # a content-free answer beats it
    (Check("s", "acc", "mc", test="superior", reference="base"), A, 0.25, False),  # beating it = beating the floor
    (Check("s", "acc", "mc", test="superior", reference="base"), A, 0.30, False),
    (Check("s", "bits_per_byte", "bpb", test="superior", reference="base"), BYTES, 8.5, True),  # lower is better
    (Check("s", "bits_per_byte", "bpb", test="superior", reference="base"), BYTES, 2.2, False),
    (Check("n", "acc", "mc", test="non_inferior", margin=0.05, reference="base"), A, 0.29, True),  # 0.24 < 0.25
    (Check("n", "acc", "mc", test="non_inferior", margin=0.05, reference="base"), A, 0.31, False),  # 0.26
    (Check("n", "bits_per_byte", "bpb", test="non_inferior", margin=0.1, reference="base"), BYTES, 7.95, True),
    (Check("n", "bits_per_byte", "bpb", test="non_inferior", margin=0.1, reference="base"), BYTES, 2.2, False),
])
def test_vacuity_rules(check, floor, ref_value, vacuous):
    assert (vacuity(check, floor, ref_value) is not None) == vacuous


def test_vacuity_message_names_the_gate_the_reference_and_the_floor():
    qa = Check("domain-qa-rouge1-gain", "rouge1", "soaes_domain_qa", test="superior", reference="previous")
    assert vacuity(qa, ("most common answer", 3.1), 0.0) == (
        "gate 'domain-qa-rouge1-gain': reference 'previous' scores 0 on soaes_domain_qa/rouge1, below the content-free "
        "floor 'most common answer' (3.1): a content-free answer would pass; compare with another reference")


def _floors(monkeypatch, table):
    calls = []

    def fake(task, metric):
        calls.append((task, metric))
        if task in ("cpt_val", "draft_heldout"):
            raise AssertionError("phase-internal tasks have no floors")
        return table.get((task, metric))

    monkeypatch.setattr(gates, "best_floor_of", fake)
    return calls


def test_best_floor_of_calls_the_floors_module_on_the_task_under_plain(monkeypatch):
    from soaes_bench.evaluation import task_floors

    monkeypatch.setattr(task_floors, "best_floor", lambda task, metric, include_path=None: (f"floor of {task}", 0.5))
    assert gates.best_floor_of("soaes_general_mc@plain", "acc") == ("floor of soaes_general_mc", 0.5)


def test_vacuous_threshold_gate_is_refused_by_validate(monkeypatch, tmp_path):
    calls = _floors(monkeypatch, {("soaes_domain_mc", "acc"): A})
    path = tmp_path / "r.yaml"
    gates = [{"name": "loss", "task": "cpt_val", "metric": "val_loss_domain", "op": "<", "threshold": 99.0},
             {"name": "easy", "task": "soaes_domain_mc", "metric": "acc", "op": ">=", "threshold": 0.2}]
    path.write_text(yaml.safe_dump({"name": "x", "cpt": {"gates": gates}}))
    with pytest.raises(UserError, match=r"r\.yaml: cpt\.gates: gate 'easy': the content-free floor 'always A' "
                                        r"scores 0\.25 on soaes_domain_mc/acc, which already meets >= 0\.2"):
        validate(load_dataclass(PipelineRecipe, path), str(path))
    assert calls == [("soaes_domain_mc", "acc")]  # cpt_val: skipped
    gates[1]["threshold"] = 0.3
    path.write_text(yaml.safe_dump({"name": "x", "cpt": {"gates": gates}}))
    validate(load_dataclass(PipelineRecipe, path), str(path))


def test_vacuous_reference_gates_are_refused_once_the_reference_is_known(monkeypatch, tmp_path):
    _floors(monkeypatch, {("soaes_general_mc@plain", "acc"): A, ("soaes_domain_qa", "rouge1"): ("most common", 3.1)})
    base = _res("soaes_general_mc@plain", "acc", 0.229)
    retained = Check("general-acc-retained", "acc", "soaes_general_mc@plain", ">=", reference="base", ratio=0.9)
    refuse_vacuous([retained], {})  # base not evaluated yet: nothing to judge
    with pytest.raises(UserError, match=r"gate 'general-acc-retained': bound 0\.2061 from reference 'base' \(0\.229\) "
                                        r"on soaes_general_mc@plain/acc is met by the content-free floor 'always A'"):
        refuse_vacuous([retained], {"base": base})
    gain = Check("domain-qa-rouge1-gain", "rouge1", "soaes_domain_qa", test="superior", reference="previous")
    refuse_vacuous([gain], {"base": base, "previous": None})
    with pytest.raises(UserError, match=r"sft\.gates: gate 'domain-qa-rouge1-gain': reference 'previous' scores 0 on "
                                        r"soaes_domain_qa/rouge1, below the content-free floor 'most common' \(3\.1\)"):
        refuse_vacuous([gain], {"previous": _res("soaes_domain_qa", "rouge1", 0.0)}, where="r.yaml: sft.gates")
    refuse_vacuous([gain], {"previous": _res("soaes_domain_qa", "rouge1", 5.0)})  # a reference above the floor


# soaes-bench gate ------------------------------------------------------------------------------------------------
@pytest.fixture
def no_floors(monkeypatch):
    """The fabricated runs below score 40 made-up items under real task names; the real floors (on 240 items)
    would call their gates vacuous. The refusal test sets its own floors."""
    monkeypatch.setattr(gates, "best_floor_of", lambda task, metric: None)


def _saved_runs(tmp_path, cpt_right=18):
    for phase, right in (("base", 10), ("cpt", cpt_right)):
        make_results(tmp_path / phase / "eval", phase, {"soaes_domain_mc": {"acc": _acc(40, range(right))}})
        make_results(tmp_path / phase / "eval_plain", phase, {"soaes_general_mc": {"acc": _acc(40, range(right))}})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "g", "evaluation": {"tasks": ["soaes_domain_mc"], "plain_tasks": ["soaes_general_mc"]},
        "cpt": {"gates": [
            {"name": "mc-gain", "task": "soaes_domain_mc", "metric": "acc", "test": "superior", "reference": "base"},
            {"name": "kept", "task": "soaes_general_mc@plain", "metric": "acc", "test": "non_inferior",
             "margin": 0.05, "reference": "base"}]},
        "sft": {"gates": [{"name": "sft-gain", "task": "soaes_domain_mc", "metric": "acc", "test": "superior",
                           "reference": "previous"}]}}))
    return recipe


def _gate(*argv):
    return cli.main(["gate", *map(str, argv)])


def test_gate_command_exit_codes(tmp_path, capsys, no_floors):
    recipe = _saved_runs(tmp_path)
    cpt, base = tmp_path / "cpt", tmp_path / "base"
    assert _gate("--recipe", recipe, "--phase", "cpt", "--results", cpt, "--reference", f"base={base}",
                 "--output", tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert out.startswith("# Gate: cpt — PASSED") and "| kept | soaes_general_mc@plain | acc |" in out
    assert (tmp_path / "out" / "gate.md").read_text() == out
    rep = json.loads((tmp_path / "out" / "gate.json").read_text())
    assert rep["passed"] and [c["n"] for c in rep["checks"]] == [40, 40] and rep["family"]["size"] == 2
    assert results.validate(rep, "gate.json") == "gate"  # still the v1 gate schema every reader knows
    # the model compared with itself: no gain -> exit 3; eval/ and eval_plain/ given one by one
    assert _gate("--recipe", recipe, "--phase", "cpt", "--results", base / "eval" / "results.json",
                 "--results", base / "eval_plain", "--reference", f"base={base}") == 3
    assert "# Gate: cpt — FAILED" in capsys.readouterr().out
    # sft: "previous" may be given as the previous phase's name
    assert _gate("--recipe", recipe, "--phase", "sft", "--results", cpt, "--reference", f"cpt={base}") == 0
    capsys.readouterr()


@pytest.mark.parametrize("argv, message", [
    (["--phase", "cpt"], "gate 'mc-gain' compares with reference 'base': pass --reference base=RUN"),
    (["--phase", "sft"], "gate 'sft-gain' compares with reference 'previous': pass --reference previous=RUN "
                         "(or cpt=RUN)"),
    (["--phase", "distill"], "--phase: 'distill' is not a phase of"),
    (["--phase", "cpt", "--reference", "base"], "--reference: expected NAME=RUN, got 'base'"),
    (["--phase", "cpt", "--reference", "base=nowhere"], "nowhere: file not found"),
    (["--phase", "cpt", "--resamples", "0"], "--resamples: must be >= 1"),
])
def test_gate_command_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, message, no_floors):
    recipe = _saved_runs(tmp_path)
    assert _gate("--recipe", recipe, "--results", tmp_path / "cpt", *argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_gate_command_refuses_a_vacuous_gate(tmp_path, capsys, monkeypatch):
    _floors(monkeypatch, {("soaes_general_mc@plain", "acc"): ("always A", 0.30)})
    recipe = _saved_runs(tmp_path)
    assert _gate("--recipe", recipe, "--phase", "cpt", "--results", tmp_path / "cpt", "--reference",
                 f"base={tmp_path / 'base'}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gate 'kept'" in err and "'always A' (0.3)" in err


def test_gate_command_reads_phase_internal_references_from_the_phase_folder(tmp_path, capsys, no_floors):
    task = {"draft_heldout": {"n": None, "metrics": {"top1_agreement": {"value": 0.5, "stderr": 0.01}}}}
    base = {"draft_heldout": {"n": None, "metrics": {"top1_agreement": {"value": 0.3, "stderr": 0.01}}}}
    (tmp_path / "distill").mkdir()
    (tmp_path / "distill" / "phase_metrics.json").write_text(json.dumps({"tasks": task, "groups": {}}))
    (tmp_path / "distill" / "summary.json").write_text(json.dumps({"baseline": {"results": {"tasks": base}}}))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "d", "distill": {"baseline": True, "gates": [
        {"name": "agree", "task": "draft_heldout", "metric": "top1_agreement", "op": ">", "reference": "baseline"}]}}))
    assert _gate("--recipe", recipe, "--phase", "distill", "--results", tmp_path / "distill") == 0
    out = capsys.readouterr().out
    # no samples: the line's statistics come from the two stderrs (normal approximation)
    assert "| agree | draft_heldout | top1_agreement | 0.5 | > | 0.3 | baseline (0.3) +0 | – | 0.2 [0.1723, 0.2277] |" in out


def test_a_failed_non_blocking_check_is_reported_but_does_not_fail_the_phase():
    res = {"tasks": {"t": {"metrics": {"acc": {"value": 0.2, "stderr": None}}}}}
    claim = Check(name="claim", task="t", metric="acc", threshold=0.5, blocking=False)
    guard = Check(name="guard", task="t", metric="acc", threshold=0.1)
    report = gates.evaluate_gate("cpt", [claim, guard], res, {})
    assert report["passed"] and [r["passed"] for r in report["checks"]] == [False, True]
    assert "FAIL (not blocking)" in gates.gate_markdown(report)
    strict = Check(name="guard", task="t", metric="acc", threshold=0.5)
    assert not gates.evaluate_gate("cpt", [strict, guard], res, {})["passed"]


def test_a_run_without_chat_template_also_stands_for_the_plain_tasks(tmp_path):
    make_results(tmp_path / "chat", "m", {"soaes_general_mc": {"acc": [1, 0]}})
    make_results(tmp_path / "plain", "m", {"soaes_general_mc": {"acc": [1, 0]}})
    for name, chat in (("chat", True), ("plain", False)):
        f = tmp_path / name / "results.json"
        obj = json.loads(f.read_text())
        obj["env"] = dict(obj.get("env") or {}, chat_template=chat)
        f.write_text(json.dumps(obj))
    assert set(load_run(tmp_path / "chat")["tasks"]) == {"soaes_general_mc"}
    plain = load_run(tmp_path / "plain")["tasks"]
    assert set(plain) == {"soaes_general_mc", "soaes_general_mc@plain"}
    assert plain["soaes_general_mc@plain"]["results_path"] == str(tmp_path / "plain" / "results.json")
