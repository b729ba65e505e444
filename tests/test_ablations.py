"""Forgetting, SFT-ablation and distillation-ablation reports (reporting/ablations.py) on tiny runs with hand-known
outcomes, plus their wiring into the pipeline after each phase."""

import json
import math

import pytest
from fixtures.reporting_runs import PAIRS, make_results

from soaes_bench import cli
from soaes_bench.errors import UserError
from soaes_bench.evaluation import writer
from soaes_bench.io import write_json
from soaes_bench.records import results as results_record
from soaes_bench.reporting import ablations

MC = "soaes_general_mc"


def _mc(run, model, right, n=10, task=MC):
    """A results dir where the 1-based items `right` of n are answered correctly (ids '<task>-<i>', 0-based)."""
    return make_results(run, model, {task: {"acc": [float(i + 1 in right) for i in range(n)]}})


def _ids(nums, task=MC):
    return [f"{task}-{i - 1}" for i in nums]


# ---------------------------------------------------------------- forgetting
def test_forgetting_counts_ids_and_mcnemar_by_hand(tmp_path):
    base = _mc(tmp_path / "base", "base", right=range(1, 7))  # items 1-6 right
    new = _mc(tmp_path / "cpt", "cpt", right=range(4, 11))  # items 4-10 right
    rep = ablations.forgetting(base, new, tasks=(MC,))
    (row,) = rep["rows"]
    assert row["forgotten_ids"] == _ids([1, 2, 3]) and row["learned_ids"] == _ids([7, 8, 9, 10])
    assert (row["forgotten"], row["learned"], row["both_right"], row["both_wrong"]) == (3, 4, 3, 0)
    assert row["base_acc"] == pytest.approx(0.6) and row["new_acc"] == pytest.approx(0.7) and row["net"] == 1
    assert row["retention"] == pytest.approx(0.7 / 0.6) and row["forgotten_rate"] == pytest.approx(3 / 6)
    # exact McNemar: 2 * P(X <= 3), X ~ Bin(7, 1/2) = 2 * (1 + 7 + 21 + 35) / 128 = 1.0
    assert row["p_mcnemar"] == pytest.approx(2 * (1 + 7 + 21 + 35) / 128)
    assert row["suite"] == "general" and row["n_shared"] == 10


def test_forgetting_significant_loss_and_suites_reported_apart(tmp_path):
    base = make_results(tmp_path / "b", "base", {MC: {"acc": [1.0] * 10},
                                                  "soaes_domain_mc": {"acc": [0.0] * 4},
                                                  "soaes_domain_qa": {"rouge1": [1.0, 2.0]}})
    new = make_results(tmp_path / "n", "new", {MC: {"acc": [1.0, 1.0] + [0.0] * 8},
                                                "soaes_domain_mc": {"acc": [1.0, 0.0, 0.0, 0.0]},
                                                "soaes_domain_qa": {"rouge1": [3.0, 2.0]}})
    rep = ablations.forgetting(base, new)  # every acc task of both runs; the ROUGE-only task is not one
    by_task = {r["task"]: r for r in rep["rows"]}
    assert set(by_task) == {MC, "soaes_domain_mc"}
    assert by_task[MC]["forgotten"] == 8 and by_task[MC]["p_mcnemar"] == pytest.approx(2 / 2**8)  # 2 * 0.5^8
    assert by_task["soaes_domain_mc"]["suite"] == "domain" and by_task["soaes_domain_mc"]["learned_ids"] == [
        "soaes_domain_mc-0"]
    assert by_task["soaes_domain_mc"]["retention"] is None  # nothing right before: no ratio
    md = ablations.forgetting_markdown(rep)
    assert md.index("## general") < md.index("## domain") and "first 8 of 8 forgotten" in md


def test_forgetting_only_pairs_shared_ids_and_refuses_missing_samples(tmp_path):
    base = _mc(tmp_path / "b", "base", right={1, 2, 3}, n=4)
    new = _mc(tmp_path / "n", "new", right={1}, n=3)  # item 4 not answered by the new run
    (row,) = ablations.forgetting(base, new)["rows"]
    assert row["n_shared"] == 3 and row["forgotten_ids"] == _ids([2, 3])
    nosamples = make_results(tmp_path / "x", "x", {MC: {"acc": [1.0]}}, write_samples=False)
    with pytest.raises(UserError, match="no per-item 'acc'"):
        ablations.forgetting(base, nosamples, tasks=(MC,))
    with pytest.raises(UserError, match="missing"):
        ablations.forgetting(base, new, tasks=("soaes_domain_mc",))


def _writer_run(out, model, items):
    """results.json + samples written by evaluation/writer.py; items = [(id, question, correct)]."""
    rows = [{"id": i, "doc_id": k, "metrics": {"acc": float(ok), "acc_norm": float(ok)}, "target": "A",
             "prediction": "A" if ok else "C", "question": q} for k, (i, q, ok) in enumerate(items)]
    acc = sum(ok for *_, ok in items) / len(items)
    task = {"group": "soaes_general", "version": 1, "config_sha256": "c", "n": len(items),
            "output_type": "multiple_choice", "higher_is_better": {"acc": True, "acc_norm": True},
            "metrics": {"acc": {"value": acc, "stderr": None}, "acc_norm": {"value": acc, "stderr": None}},
            "samples": f"samples/{MC}.jsonl"}
    res = {**results_record.new(model={"name": model}, env={}, tasks={MC: task}, groups={}, suite="general",
                                seed=1, run="r", date="2026-01-01T00:00:00Z"), "sample_rows": {MC: rows}}
    writer.write_run(res, out)
    return out / "results.json"


def test_forgetting_markdown_lists_forgotten_questions(tmp_path):
    items = [(f"q{k}", f"第{k}题：国有资产\n监督管理", True) for k in range(12)]
    base = _writer_run(tmp_path / "b", "base", items)
    new = _writer_run(tmp_path / "n", "new", [(i, q, k >= 11) for k, (i, q, _) in enumerate(items)])
    rep = ablations.forgetting(base, new, metric="acc_norm")
    assert rep["rows"][0]["forgotten"] == 11
    md = ablations.forgetting_markdown(rep)
    assert "first 10 of 11 forgotten" in md and "| q0 | 第0题：国有资产 监督管理 | A | A | C |" in md
    assert "| q10 |" not in md  # only the first 10 are listed


def test_write_forgetting_adds_plain_text_rows(tmp_path):
    items = [(f"q{k}", f"第{k}题", k < 6) for k in range(10)]
    for phase, chat_right, plain_right in (("base", 6, 2), ("cpt", 3, 5)):
        _writer_run(tmp_path / phase / "eval", phase, [(i, q, k < chat_right) for k, (i, q, _) in enumerate(items)])
        _writer_run(tmp_path / phase / "eval_plain", phase, [(i, q, k < plain_right) for k, (i, q, _) in enumerate(items)])
    rep = json.loads(ablations.write_forgetting(tmp_path, "cpt").read_text())
    rows = {r["task"]: r for r in rep["rows"]}
    assert set(rows) == {MC, MC + "@plain"}
    assert (rows[MC]["forgotten"], rows[MC]["learned"]) == (3, 0)
    assert (rows[MC + "@plain"]["forgotten"], rows[MC + "@plain"]["learned"]) == (0, 3)
    # plain rows that forget items list them from the plain-text samples
    _writer_run(tmp_path / "sft" / "eval", "sft", items)
    _writer_run(tmp_path / "sft" / "eval_plain", "sft", [(i, q, False) for i, q, _ in items])
    md = ablations.write_forgetting(tmp_path, "sft").with_suffix(".md").read_text()
    assert f"### {MC}@plain: first 2 of 2 forgotten items" in md and "| q1 | 第1题 |" in md


def test_item_questions_fall_back_to_the_shipped_task_data():
    from soaes_bench.io import iter_jsonl
    from soaes_bench.paths import tasks_dir

    _, first = next(iter_jsonl(tasks_dir() / "soaes_general" / "data" / "general_mc.jsonl"))
    found = ablations.item_questions([first["id"], "no-such-id"], rows={})
    assert found == {first["id"]: first["question"]}
    assert ablations.item_questions(["x"], rows={"x": {"doc": {"question": "问"}}}, data_dirs=[]) == {"x": "问"}


# ---------------------------------------------------------------- SFT ablation
def _gen_runs(tmp_path, config_b="cfg"):
    n = len(PAIRS)
    single_preds = [p for p, _ in PAIRS]
    prog_preds = single_preds[:-1] + [PAIRS[-1][1]]  # the last answer becomes the reference itself
    rs, rp = [10.0, 20.0, 30.0, 40.0, 50.0], [20.0, 20.0, 40.0, 40.0, 60.0]
    single = make_results(tmp_path / "single", "single", {"soaes_domain_qa": {"rouge1": rs, "bleu4": [0] * n},
                                                          "soaes_general_gen": {"rouge1": rs}}, preds=single_preds)
    prog = make_results(tmp_path / "prog", "prog", {"soaes_domain_qa": {"rouge1": rp, "bleu4": [0] * n},
                                                    "soaes_general_gen": {"rouge1": rp[::-1]}}, preds=prog_preds,
                        config=config_b)
    return single, prog, (rs, rp), (single_preds, prog_preds)


def test_sft_ablation_values_diff_ratio_and_paired_ci_by_hand(tmp_path):
    from sacrebleu.metrics import BLEU

    single, prog, (rs, rp), (sp, pp) = _gen_runs(tmp_path)
    rep = ablations.sft_ablation(single, prog, resamples=500, seed=3)
    rows = {(r["task"], r["metric"]): r for r in rep["rows"]}
    assert set(rows) == {("soaes_domain_qa", "rouge1"), ("soaes_domain_qa", "bleu4"), ("soaes_general_gen", "rouge1")}
    r = rows["soaes_domain_qa", "rouge1"]
    assert (r["single"], r["progressive"]) == (30.0, 36.0)
    assert r["diff"] == pytest.approx(6.0) and r["ratio"] == pytest.approx(1.2) and r["n_shared"] == 5
    # compare's statistics: 5 items are too few for any 95% resampling interval (stats.min_units: [min, max] of 5
    # values covers at most 93.75%), so no CI is reported (the percentile draws are tested in test_stats.py)
    assert (r["ci_low"], r["ci_high"], r["ratio_low"], r["ratio_high"]) == (None, None, None, None)
    refs = [ref for _, ref in PAIRS]
    b_single = BLEU(tokenize="zh").corpus_score(sp, [refs]).score
    b_prog = BLEU(tokenize="zh").corpus_score(pp, [refs]).score
    b = rows["soaes_domain_qa", "bleu4"]
    assert b["single"] == pytest.approx(b_single) and b["progressive"] == pytest.approx(b_prog)
    assert b["diff"] == pytest.approx(b_prog - b_single) and b["ratio"] == pytest.approx(b_prog / b_single)
    assert b["ci_low"] is None and b["ci_method"] == "paired-bootstrap"
    g = rows["soaes_general_gen", "rouge1"]
    assert g["progressive"] == pytest.approx(36.0) and g["diff"] == pytest.approx(6.0)
    md = ablations.sft_markdown(rep)
    assert "| soaes_domain_qa | rouge1 | 30.00 | 36.00 | 6.00 | 1.200 |" in md


def test_sft_ablation_refuses_runs_with_different_task_configs(tmp_path):
    single, prog, *_ = _gen_runs(tmp_path, config_b="other")
    with pytest.raises(UserError, match="config_sha256 differs"):
        ablations.sft_ablation(single, prog, resamples=50)


# ---------------------------------------------------------------- distillation ablation
def _heldout(top1, se, kl, ce):
    return {"tasks": {"draft_heldout": {"n": 100, "higher_is_better": {"top1_agreement": True, "kl_teacher": False,
                                                                        "ce": False},
                                        "metrics": {"top1_agreement": {"value": top1, "stderr": se},
                                                    "kl_teacher": {"value": kl, "stderr": None},
                                                    "ce": {"value": ce, "stderr": None}}}}}


def _distill_dir(run):
    write_json(run / "distill" / "summary.json", {"phase": "distill",
                                                   "distilled": {"results": _heldout(0.5, 0.02, 1.5, 3.3)},
                                                   "baseline": {"results": _heldout(0.4, 0.02, 2.0, 3.0)}})


def test_distill_ablation_ratios_by_hand(tmp_path):
    _distill_dir(tmp_path)
    rows = {r["metric"]: r for r in ablations.distill_ablation(tmp_path)["rows"]}
    t = rows["top1_agreement"]
    assert t["ratio"] == pytest.approx(1.25) and t["diff"] == pytest.approx(0.1) and t["better"] == "distilled"
    half = 1.959964 * math.sqrt(0.02**2 + 0.02**2)
    assert [t["ci_low"], t["ci_high"]] == pytest.approx([0.1 - half, 0.1 + half], abs=1e-6)
    assert rows["kl_teacher"]["ratio"] == pytest.approx(0.75) and rows["kl_teacher"]["better"] == "distilled"
    assert rows["ce"]["ratio"] == pytest.approx(1.1) and rows["ce"]["better"] == "undistilled"
    assert rows["ce"]["ci_low"] is None
    write_json(tmp_path / "distill" / "summary.json", {"distilled": {"results": _heldout(0.5, 0.02, 1.5, 3.3)}})
    with pytest.raises(UserError, match="undistilled baseline"):
        ablations.distill_ablation(tmp_path)


# ---------------------------------------------------------------- writers, report, pipeline wiring
def _full_run(run, scratch):
    _mc(run / "base" / "eval", "base", right=range(1, 7))
    _mc(run / "cpt" / "eval", "cpt", right=range(4, 11))
    _mc(run / "sft" / "eval", "sft", right=range(2, 11))
    single, prog, *_ = _gen_runs(scratch)
    for src, dst in ((single, run / "sft" / "single_stage" / "eval"), (prog, run / "sft" / "eval")):
        obj = json.loads(src.read_text())
        if dst.joinpath("results.json").is_file():  # sft/eval: add the generation tasks to its MC task
            mine = json.loads(dst.joinpath("results.json").read_text())
            obj["tasks"].update(mine["tasks"])
        (dst / "samples").mkdir(parents=True, exist_ok=True)
        for f in (src.parent / "samples").iterdir():
            (dst / "samples" / f.name).write_bytes(f.read_bytes())
        write_json(dst / "results.json", obj)
    _distill_dir(run)


def test_ablations_command_and_report(tmp_path, capsys):
    from soaes_bench import results
    from soaes_bench.reporting.report import report

    run = tmp_path / "run"
    _full_run(run, tmp_path / "gen")
    assert cli.main(["ablations", str(run), "--resamples", "100"]) == 0
    printed = capsys.readouterr().out
    for name in ("cpt/forgetting", "sft/forgetting", "sft/ablation", "distill/ablation"):
        assert (run / f"{name}.json").is_file() and (run / f"{name}.md").is_file(), name
        assert f"{name}.json: wrote" in printed
    sft_forgot = json.loads((run / "sft" / "forgetting.json").read_text())["rows"][0]
    assert sft_forgot["forgotten_ids"] == _ids([1]) and sft_forgot["learned_ids"] == _ids([7, 8, 9, 10])
    results.load([run])  # the new files do not disturb the results loader
    text = report(run).read_text()
    assert "## Ablations" in text and "From `sft/ablation.json`." in text and "From `distill/ablation.json`." in text
    assert "| soaes_domain_qa | rouge1 | 30.00 | 36.00 | 6.000 | 1.200 |" in text
    assert "| top1_agreement | True | 0.400 | 0.500 |" in text
    assert cli.main(["ablations", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"soaes-bench ablations: error: {tmp_path / 'missing'}: not a directory"


def test_phase_reports_skip_missing_inputs_and_never_raise(tmp_path):
    out = ablations.phase_reports(tmp_path, "sft")
    assert all(str(v).startswith("skipped (no ") for v in out.values()) and len(out) == 2
    (tmp_path / "base" / "eval").mkdir(parents=True)
    (tmp_path / "base" / "eval" / "results.json").write_text("{broken")
    _mc(tmp_path / "cpt" / "eval", "cpt", right={1})
    msg = ablations.phase_reports(tmp_path, "cpt")["cpt/forgetting.json"]
    assert msg.startswith("warning: not written (UserError: ") and "invalid JSON" in msg
    assert ablations.phase_reports(tmp_path, "base") == {}


def test_pipeline_writes_reports_after_the_gate_without_changing_done_json(tmp_path, capsys):
    """_finish_phase with cached evaluations (no model is loaded): the forgetting report follows the gate, and a
    report that cannot be built is one warning line while gate.json and done.json are as without reports."""
    from soaes_bench.training.cpt import CPTConfig
    from soaes_bench.training.gate_spec import Check
    from soaes_bench.phase_eval import EvalSpec
    from soaes_bench.pipeline import _finish_phase
    from soaes_bench.pipeline_recipe import PipelineRecipe

    run = tmp_path / "run"
    base = _mc(run / "base" / "eval", "base", right=range(1, 7))
    _mc(run / "cpt" / "eval", "cpt", right=range(4, 11))
    gate = Check("acc-kept", "acc", MC, ">=", reference="base", ratio=0.9)
    cfg = CPTConfig(gates=[gate])
    r = PipelineRecipe(name="t", evaluation=EvalSpec(), cpt=cfg)
    summary = {"val_before": {"val_loss_domain": 3.0}, "val_after": {"val_loss_domain": 2.5}}
    refs = {"base": json.loads(base.read_text())}
    verdict = _finish_phase(r, "cpt", cfg, run / "cpt", summary, refs, refs["base"], evaluate_fn=None)
    assert verdict["passed"]  # 0.7 >= 0.6 * 0.9
    assert json.loads((run / "cpt" / "forgetting.json").read_text())["rows"][0]["forgotten"] == 3
    assert "pipeline: cpt/forgetting.json: wrote" in capsys.readouterr().out
    done = json.loads((run / "cpt" / "done.json").read_text())
    assert done == {"phase": "cpt", "settings": json.loads(json.dumps(__import__("dataclasses").asdict(cfg))),
                    "gate_passed": True}
    # a base evaluation whose samples vanished: the report fails, the phase still finishes with the same verdict
    (run / "base" / "eval" / "samples" / f"{MC}.jsonl").unlink()
    (run / "cpt" / "forgetting.json").unlink()
    verdict = _finish_phase(r, "cpt", cfg, run / "cpt", summary, refs, refs["base"], evaluate_fn=None)
    assert verdict["passed"] and not (run / "cpt" / "forgetting.json").exists()
    lines = [x for x in capsys.readouterr().out.splitlines() if "forgetting" in x]
    assert len(lines) == 1 and "warning: not written" in lines[0]


def test_forgetting_reads_each_task_in_its_own_accuracy_form(tmp_path):
    from fixtures.reporting_runs import make_results

    from soaes_bench.reporting.ablations import forgetting

    make_results(tmp_path / "a", "a", {"t_letter": {"acc": [1, 1, 0, 0]}, "t_cloze": {"cloze_acc": [1, 0, 0, 0]}})
    make_results(tmp_path / "b", "b", {"t_letter": {"acc": [1, 0, 0, 0]}, "t_cloze": {"cloze_acc": [1, 1, 1, 0]}})
    rows = {r["task"]: r for r in forgetting(tmp_path / "a", tmp_path / "b")["rows"]}
    assert (rows["t_letter"]["metric"], rows["t_letter"]["forgotten"], rows["t_letter"]["learned"]) == ("acc", 1, 0)
    assert (rows["t_cloze"]["metric"], rows["t_cloze"]["forgotten"], rows["t_cloze"]["learned"]) == ("cloze_acc", 0, 2)
