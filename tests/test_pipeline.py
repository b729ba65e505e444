"""The micro pipeline end to end on tiny data: phases, gates, exit codes, --resume, --only; plus distill pieces."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from soaes_bench.errors import UserError
from soaes_bench.training import distill
from soaes_bench.training.fixtures import micro_pipeline, tiny_tokenizer
from soaes_bench.models import load_tokenizer, new_model, save_model
from soaes_bench.phase_eval import EvalSpec
from soaes_bench.pipeline import EXIT_GATE_FAILED, run_pipeline




@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    r = micro_pipeline(root)
    return root, load_tokenizer(root / "tok"), r


@pytest.fixture(autouse=True)
def _no_floors(monkeypatch):
    """fake_evaluate() below scores bits per token of tiny models under real task names: the real content-free
    floors of those tasks would call their gates vacuous. The refusal tests set their own floors."""
    from soaes_bench.reporting import gates

    monkeypatch.setattr(gates, "best_floor_of", lambda task, metric: None)


def _write(root, name, recipe):
    path = root / name
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True))
    return path


def test_micro_pipeline_runs_gates_and_resumes(world, tmp_path):
    root, tok, r = world
    recipe = _write(tmp_path, "r.yaml", r)
    out = tmp_path / "run"
    assert run_pipeline(recipe, out) == 0
    for phase in ("cpt", "sft", "distill"):
        assert (out / phase / "model" / "model.safetensors").is_file(), phase
        gate = json.loads((out / phase / "gate.json").read_text())
        assert gate["schema"] == "soaes-bench/gate" and gate["passed"], gate
    for extra in ("sft/stage1/model", "sft/stage2/model", "sft/single_stage/model", "distill/baseline/model"):
        assert (out / extra / "config.json").is_file(), extra
    cpt = json.loads((out / "cpt" / "gate.json").read_text())["checks"][0]
    assert cpt["value"] < cpt["reference_value"]  # domain validation loss fell during CPT
    summary = json.loads((out / "sft" / "summary.json").read_text())
    assert summary["single_stage"]["steps"] == 6 and [s["steps"] for s in summary["stages"]] == [3, 3]
    assert all(s["replay_rows"] > 0 for s in summary["stages"])   # general text replayed in each SFT stage
    assert summary["single_stage"]["examples"] == sum(s["examples"] + s["replay_rows"] for s in summary["stages"])
    res = json.loads((out / "distill" / "phase_metrics.json").read_text())["tasks"][distill.HELDOUT_TASK]["metrics"]
    assert 0.0 <= res["top1_agreement"]["value"] <= 1.0
    # resume: everything is done -> nothing retrained, same exit code
    mtime = (out / "sft" / "model" / "model.safetensors").stat().st_mtime
    assert run_pipeline(recipe, out, resume=True) == 0
    assert (out / "sft" / "model" / "model.safetensors").stat().st_mtime == mtime
    # a run finished before a training setting existed still resumes, reading the missing setting as its default
    done = json.loads((out / "sft" / "done.json").read_text())
    assert done["settings"]["stages"][0]["train"].pop("group_by_length") == 0
    (out / "sft" / "done.json").write_text(json.dumps(done))
    assert run_pipeline(recipe, out, resume=True) == 0
    assert (out / "sft" / "model" / "model.safetensors").stat().st_mtime == mtime
    with pytest.raises(UserError, match="--resume"):
        run_pipeline(recipe, out)
    # --only distill from the finished sft phase, into a fresh output dir -> needs the earlier phases there
    with pytest.raises(UserError, match="has not finished"):
        run_pipeline(recipe, tmp_path / "other", only="distill")
    # --only distill again in this run: timings.json keeps the earlier phases (it used to start afresh)
    import shutil

    shutil.rmtree(out / "distill")
    assert run_pipeline(recipe, out, only="distill") == 0
    timings = json.loads((out / "timings.json").read_text())
    assert {"cpt", "sft", "distill"} <= set(timings), timings


def test_failing_gate_stops_with_exit_code_3(world, tmp_path):
    root, tok, r = world
    r = json.loads(json.dumps(r))
    r["cpt"]["gates"] = [{"name": "impossible", "task": "cpt_val", "metric": "val_loss_domain", "op": "<", "threshold": 0.0}]
    out = tmp_path / "run"
    assert run_pipeline(_write(tmp_path, "r.yaml", r), out) == EXIT_GATE_FAILED
    gate = json.loads((out / "cpt" / "gate.json").read_text())
    assert not gate["passed"] and not (out / "sft").exists()
    assert "FAIL" in (out / "cpt" / "gate.md").read_text()
    # only the gate changes -> --resume re-judges the saved CPT model without retraining it, then goes on
    mtime = (out / "cpt" / "model" / "model.safetensors").stat().st_mtime_ns
    r["cpt"]["gates"][0].update(op=">", threshold=0.0)
    assert run_pipeline(_write(tmp_path, "r.yaml", r), out, resume=True) == 0
    assert (out / "cpt" / "model" / "model.safetensors").stat().st_mtime_ns == mtime
    assert json.loads((out / "cpt" / "gate.json").read_text())["passed"]
    # a training setting changed -> refused, nothing silently mixed
    r["cpt"]["replay_fraction"] = 0.5
    with pytest.raises(UserError, match="different settings"):
        run_pipeline(_write(tmp_path, "r.yaml", r), out, resume=True)


def test_teacher_cache_is_reused_and_keyed(world, tmp_path):
    root, tok, _ = world
    teacher = new_model("micro", tok, seed=5, max_position=64)
    tdir = save_model(teacher, tok, tmp_path / "teacher")
    blocks = torch.randint(0, len(tok), (3, 16))
    cfg = distill.DistillConfig(top_k=4, seq_len=16)
    path = tmp_path / "cache.safetensors"
    v1, i1 = distill.teacher_cache(teacher, tdir, blocks, cfg, path)
    assert v1.shape == (3, 16, 4) and v1.dtype == torch.float16 and i1.dtype == torch.int16
    from soaes_bench.training.losses import teacher_topk

    full = teacher(input_ids=blocks).logits
    ref_v, ref_i = teacher_topk(full.flatten(0, 1), 4)
    torch.testing.assert_close(v1.float().flatten(0, 1), ref_v, atol=1e-2, rtol=1e-3)
    stamp = path.stat().st_mtime_ns
    distill.teacher_cache(teacher, tdir, blocks, cfg, path)
    assert path.stat().st_mtime_ns == stamp  # reused
    distill.teacher_cache(teacher, tdir, blocks, distill.DistillConfig(top_k=4, seq_len=16, temperature=2.0), path)
    assert path.stat().st_mtime_ns != stamp  # other temperature -> rebuilt


def test_distill_refuses_a_teacher_with_another_vocabulary(world, tmp_path):
    root, tok, _ = world
    other = tiny_tokenizer(tmp_path / "other", vocab_size=350)
    save_model(new_model("micro", other, seed=0), other, tmp_path / "teacher")
    with pytest.raises(UserError, match="tokenizers differ"):
        distill.run_distill(distill.DistillConfig(data=[str(root / "domain.jsonl")]), tmp_path / "teacher", tmp_path / "d",
                            tokenizer_dir=root / "tok")


def _fake_evaluate(root, calls):
    """evaluate() stand-in with a real measurement: bits per token on the domain text, for every task asked
    (chat_template "off" adds 1 so plain-text results are told apart)."""
    import math

    from soaes_bench.training import data
    from soaes_bench.training.loop import mean_block_loss

    def fake_evaluate(model, tokenizer, suite=None, tasks=None, limit=None, batch_size=8, chat_template="auto",
                      gen_batch_size=32, model_info=None):
        blocks, _ = data.packed_corpus(root / "domain.jsonl", tokenizer, 32, seed=9)
        bpt = mean_block_loss(model, blocks[:8]) / math.log(2) + (chat_template == "off")
        calls.append({"value": bpt, "tasks": tasks, "chat_template": chat_template, "model": model_info})
        names = tasks or ["soaes_domain_bpb"]
        task = {"group": "soaes_domain", "n": 8, "higher_is_better": {"bits_per_byte": False},
                "metrics": {"bits_per_byte": {"value": bpt, "stderr": None}}}
        return {"schema": "soaes-bench/results", "schema_version": 1, "suite": suite or "custom", "limit": limit,
                "model": model_info,
                "tasks": {n: dict(task, samples=f"samples/{n}.jsonl") for n in names}, "groups": {},
                "sample_rows": {n: [{"id": "x", "doc_id": 0, "metrics": {"bits_per_byte": bpt}}] for n in names}}

    return fake_evaluate


def test_pipeline_evaluates_base_and_gates_against_it(world, tmp_path):
    """With `evaluation` on, the starting model and each phase model go through evaluate() and gates compare
    against the "base" results."""
    root, tok, r = world
    calls = []
    rec = {"name": "evalcheck", "init": r["init"], "tokenizer": r["tokenizer"],
           "evaluation": {"suite": "domain", "limit": 2}, "cpt": dict(r["cpt"])}
    rec["cpt"]["gates"] = [{"name": "bpb-gain", "task": "soaes_domain_bpb", "metric": "bits_per_byte", "op": "<",
                            "reference": "base"}]
    out = tmp_path / "run"
    assert run_pipeline(_write(tmp_path, "r.yaml", rec), out, evaluate_fn=_fake_evaluate(root, calls)) == 0
    values = [c["value"] for c in calls]
    assert len(values) == 2 and values[1] < values[0]
    assert (out / "base" / "eval" / "results.json").is_file() and (out / "cpt" / "eval" / "samples").is_dir()
    check = json.loads((out / "cpt" / "gate.json").read_text())["checks"][0]
    assert check["reference_value"] == pytest.approx(values[0]) and check["value"] == pytest.approx(values[1])
    # each results file names the weights it measured
    from soaes_bench.io import sha256_files

    for call, model_dir in zip(calls, (r["init"], out / "cpt" / "model")):
        assert call["model"]["weights_sha256"] == sha256_files(sorted(Path(model_dir).glob("*.safetensors")))
        assert call["model"]["name"] == str(model_dir)
    written = json.loads((out / "cpt" / "eval" / "results.json").read_text())["model"]
    assert written["weights_sha256"] == calls[1]["model"]["weights_sha256"]


def test_plain_tasks_are_scored_without_chat_template_and_gated_as_task_at_plain(world, tmp_path):
    root, tok, r = world
    calls = []
    rec = {"name": "plain", "init": r["init"], "tokenizer": r["tokenizer"], "cpt": dict(r["cpt"]),
           "evaluation": {"tasks": ["soaes_domain_bpb"], "plain_tasks": ["soaes_domain_bpb"], "limit": 2}}
    rec["cpt"]["gates"] = [{"name": "plain-gain", "task": "soaes_domain_bpb@plain", "metric": "bits_per_byte",
                            "op": "<", "reference": "base"}]
    out = tmp_path / "run"
    assert run_pipeline(_write(tmp_path, "r.yaml", rec), out, evaluate_fn=_fake_evaluate(root, calls)) == 0
    assert [c["chat_template"] for c in calls] == ["auto", "off", "auto", "off"]
    assert all(c["tasks"] == ["soaes_domain_bpb"] for c in calls)
    assert (out / "base" / "eval_plain" / "results.json").is_file() and (out / "cpt" / "eval_plain").is_dir()
    check = json.loads((out / "cpt" / "gate.json").read_text())["checks"][0]
    assert check["reference_value"] == pytest.approx(calls[1]["value"]) and check["value"] == pytest.approx(calls[3]["value"])
    merged = json.loads((out / "cpt" / "phase_metrics.json").read_text())["tasks"]
    assert {"soaes_domain_bpb", "soaes_domain_bpb@plain", "cpt_val"} <= set(merged)
    # a finished run is read back, not evaluated again
    assert run_pipeline(_write(tmp_path, "r.yaml", rec), out, resume=True, evaluate_fn=_fake_evaluate(root, calls)) == 0
    assert len(calls) == 4


@pytest.mark.parametrize("evaluation, task, message", [
    ({"plain_tasks": []}, "soaes_domain_bpb@plain", "evaluation.plain_tasks does not evaluate"),
    ({"tasks": ["soaes_domain_mc"]}, "soaes_domain_bpb", "evaluation.tasks does not evaluate"),
])
def test_gate_on_a_task_that_is_not_evaluated_is_refused_before_training(world, tmp_path, evaluation, task, message):
    root, tok, r = world
    rec = {"name": "x", "init": r["init"], "tokenizer": r["tokenizer"], "cpt": dict(r["cpt"]), "evaluation": evaluation}
    rec["cpt"]["gates"] = [{"name": "g", "task": task, "metric": "bits_per_byte", "op": "<", "reference": "base"}]
    with pytest.raises(UserError, match=message):
        run_pipeline(_write(tmp_path, "r.yaml", rec), tmp_path / "run", evaluate_fn=lambda *a, **k: 1 / 0)
    assert not (tmp_path / "run").exists()


def test_single_stage_model_is_evaluated_on_the_ablation_tasks_only(world, tmp_path):
    root, tok, r = world
    calls = []
    rec = {"name": "abl", "init": r["init"], "tokenizer": r["tokenizer"], "cpt": dict(r["cpt"], gates=[]),
           "sft": dict(r["sft"], gates=[]),
           "evaluation": {"tasks": ["soaes_domain_bpb", "soaes_domain_qa"], "plain_tasks": ["soaes_domain_bpb"],
                          "ablation_tasks": ["soaes_domain_qa"], "limit": 2}}
    assert run_pipeline(_write(tmp_path, "r.yaml", rec), tmp_path / "run", evaluate_fn=_fake_evaluate(root, calls)) == 0
    # cpt and the progressive SFT model: chat + plain (no gate reads base); the single-stage model: its ablation task
    assert [(c["tasks"], c["chat_template"]) for c in calls[-3:]] == [
        (["soaes_domain_bpb", "soaes_domain_qa"], "auto"), (["soaes_domain_bpb"], "off"), (["soaes_domain_qa"], "auto")]
    assert len(calls) == 5 and not (tmp_path / "run" / "sft" / "single_stage" / "eval_plain").exists()
    # a gate comparing with the single-stage model on a task it is not evaluated on is refused before training
    rec["sft"]["gates"] = [{"name": "g", "task": "soaes_domain_bpb", "metric": "bits_per_byte", "op": "<",
                            "reference": "single_stage"}]
    with pytest.raises(UserError, match="ablation_tasks does not evaluate"):
        run_pipeline(_write(tmp_path, "r.yaml", rec), tmp_path / "run2", evaluate_fn=lambda *a, **k: 1 / 0)


def test_gated_only_evaluates_each_model_on_what_gates_read_from_it(world, tmp_path):
    root, tok, r = world
    calls = []
    bpb = {"metric": "bits_per_byte", "op": "<"}
    rec = {"name": "g", "init": r["init"], "tokenizer": r["tokenizer"],
           "cpt": dict(r["cpt"], gates=[dict(bpb, name="a", task="soaes_domain_bpb", reference="base"),
                                        dict(bpb, name="b", task="soaes_domain_bpb@plain", reference="base", margin=9)]),
           "sft": dict(r["sft"], single_stage=False,
                       gates=[dict(bpb, name="c", task="soaes_domain_qa", reference="previous", margin=9),
                              dict(bpb, name="d", task="soaes_domain_mc@plain", threshold=99)]),
           "evaluation": {"tasks": ["soaes_domain_qa", "soaes_domain_mc", "soaes_domain_bpb"],
                          "plain_tasks": ["soaes_domain_bpb", "soaes_domain_mc"], "gated_only": True, "limit": 2}}
    assert run_pipeline(_write(tmp_path, "r.yaml", rec), tmp_path / "run", evaluate_fn=_fake_evaluate(root, calls)) == 0
    # base: what cpt compares with it; cpt: its own gates and sft's "previous" one; sft: its own gates
    assert [(c["tasks"], c["chat_template"]) for c in calls] == [
        (["soaes_domain_bpb"], "auto"), (["soaes_domain_bpb"], "off"),
        (["soaes_domain_qa", "soaes_domain_bpb"], "auto"), (["soaes_domain_bpb"], "off"),
        (["soaes_domain_qa"], "auto"), (["soaes_domain_mc"], "off")]
    assert json.loads((tmp_path / "run" / "sft" / "gate.json").read_text())["results"].endswith("sft/eval/results.json")
    # a model read only as plain text gets no chat-template run; a model nothing reads gets no run at all
    spec = EvalSpec(tasks=["x", "y"], plain_tasks=["y"], gated_only=True)
    assert (spec.for_model({"y@plain"}).tasks, spec.for_model({"y@plain"}).plain_tasks) == ([], ["y"])
    assert spec.for_model(set()) is None
    # without gated_only every model gets every task
    spec = EvalSpec(tasks=["x", "y"], plain_tasks=["y"])
    assert spec.for_model({"x"}) is spec


def test_gate_report_names_the_plain_results_when_the_model_has_no_other(world, tmp_path):
    root, tok, r = world
    rec = {"name": "p", "init": r["init"], "tokenizer": r["tokenizer"],
           "cpt": dict(r["cpt"], gates=[{"name": "a", "task": "soaes_domain_bpb@plain", "metric": "bits_per_byte",
                                         "op": "<", "reference": "base", "margin": 9}]),
           "evaluation": {"tasks": ["soaes_domain_bpb"], "plain_tasks": ["soaes_domain_bpb"], "gated_only": True}}
    out = tmp_path / "run"
    assert run_pipeline(_write(tmp_path, "r.yaml", rec), out, evaluate_fn=_fake_evaluate(root, [])) == 0
    source = json.loads((out / "cpt" / "gate.json").read_text())["results"]
    assert source == str(out / "cpt" / "eval_plain" / "results.json") and not (out / "cpt" / "eval").exists()


def _floor(monkeypatch, value):
    from soaes_bench.reporting import gates

    monkeypatch.setattr(gates, "best_floor_of", lambda task, metric: ("tiny floor", value)
                        if (task, metric) == ("soaes_domain_bpb", "bits_per_byte") else None)


def test_vacuous_gate_against_base_is_refused_after_the_base_evaluation_before_cpt_trains(world, tmp_path,
                                                                                         monkeypatch):
    root, tok, r = world
    _floor(monkeypatch, 0.5)  # bits per byte: lower is better; the base scores several bits, worse than the floor
    calls = []
    rec = {"name": "v", "init": r["init"], "tokenizer": r["tokenizer"], "cpt": dict(r["cpt"], gates=[]),
           "sft": dict(r["sft"], single_stage=False, gates=[
               {"name": "bpb-gain", "task": "soaes_domain_bpb", "metric": "bits_per_byte", "test": "superior",
                "reference": "base"}]),
           "evaluation": {"tasks": ["soaes_domain_bpb"], "limit": 2}}
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"sft\.gates: gate 'bpb-gain': reference 'base' scores [\d.]+ on "
                                        r"soaes_domain_bpb/bits_per_byte, above the content-free floor 'tiny floor' "
                                        r"\(0\.5\): a content-free answer would pass"):
        run_pipeline(_write(tmp_path, "r.yaml", rec), out, evaluate_fn=_fake_evaluate(root, calls))
    assert len(calls) == 1 and (out / "base" / "eval" / "results.json").is_file() and not (out / "cpt").exists()
    # a floor the base does not beat: the gate is judged on the per-item samples the pipeline kept the path of
    _floor(monkeypatch, 50.0)
    rec["cpt"]["gates"] = rec.pop("sft")["gates"]
    assert run_pipeline(_write(tmp_path, "r.yaml", rec), tmp_path / "run2", evaluate_fn=_fake_evaluate(root, [])) == 0
    check = json.loads((tmp_path / "run2" / "cpt" / "gate.json").read_text())["checks"][0]
    # one sample item: CPT lowered its bits per byte, in every bootstrap draw
    assert check["test"] == "superior" and check["passed"] and check["n"] == 1 and check["diff"] < 0
    assert check["diff_ci"] == [check["diff"], check["diff"]] and check["p"] == pytest.approx(1 / 2001)
    metrics = json.loads((tmp_path / "run2" / "cpt" / "phase_metrics.json").read_text())["tasks"]["soaes_domain_bpb"]
    assert metrics["results_path"] == str(tmp_path / "run2" / "cpt" / "eval" / "results.json")


def test_vacuous_gate_against_previous_is_refused_at_the_start_of_its_phase(world, tmp_path, monkeypatch):
    root, tok, r = world
    _floor(monkeypatch, 0.5)
    rec = {"name": "v", "init": r["init"], "tokenizer": r["tokenizer"], "cpt": dict(r["cpt"], gates=[]),
           "sft": dict(r["sft"], single_stage=False, gates=[
               {"name": "bpb-gain", "task": "soaes_domain_bpb", "metric": "bits_per_byte", "test": "non_inferior",
                "margin": 0.1, "reference": "previous"}]),
           "evaluation": {"tasks": ["soaes_domain_bpb"], "limit": 2}}
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"sft\.gates: gate 'bpb-gain': reference 'previous' \+ margin = .* above "
                                        r"the content-free floor 'tiny floor' \(0\.5\)"):
        run_pipeline(_write(tmp_path, "r.yaml", rec), out, evaluate_fn=_fake_evaluate(root, []))
    assert (out / "cpt" / "done.json").is_file() and not (out / "sft").exists()  # refused before SFT trains



def test_saved_floor_results_are_reused_only_when_they_cover_every_floor_task(tmp_path, monkeypatch):
    """--resume after a gate against the floor was added must not judge it on a floor run that lacks its task (the
    reference run of 2026-12-04 did: 'missing in reference floor')."""
    import json

    from soaes_bench import phase_eval
    from soaes_bench.evaluation import constant, writer

    runs = []

    def fake_evaluate(lm, tasks, limit):
        runs.append(list(tasks))
        return {"tasks": {t: {"n": 1, "metrics": {"acc": {"value": 0.25}}} for t in tasks}}

    def fake_write(res, where):
        where.mkdir(parents=True, exist_ok=True)
        (where / "results.json").write_text(json.dumps(res), encoding="utf-8")
        return res

    monkeypatch.setattr(constant, "floor_lm", lambda tasks, limit=None: None)
    monkeypatch.setattr(constant, "evaluate_constant", fake_evaluate)
    monkeypatch.setattr(writer, "write_run", fake_write)
    where = tmp_path / "floor" / "eval"
    first = phase_eval.evaluate_floor(["a"], None, where)
    again = phase_eval.evaluate_floor(["a"], None, where)
    grown = phase_eval.evaluate_floor(["a", "b"], None, where)
    assert runs == [["a"], ["a", "b"]]  # the second call reused the saved run; the third had a task it lacked
    assert set(first["tasks"]) == set(again["tasks"]) == {"a", "a@plain"}
    assert set(grown["tasks"]) == {"a", "a@plain", "b", "b@plain"}


def test_ablation_in_its_own_process_is_collected_after_distillation_and_finished_on_resume(world, tmp_path):
    root, tok, r = world
    calls = []
    rec = {"name": "par", "init": r["init"], "tokenizer": r["tokenizer"], "cpt": dict(r["cpt"], gates=[]),
           "sft": dict(r["sft"], gates=[], ablation_in_parallel=True), "distill": dict(r["distill"], gates=[]),
           "evaluation": {"tasks": ["soaes_domain_qa"], "ablation_tasks": ["soaes_domain_qa"], "limit": 2}}
    recipe, out = _write(tmp_path, "r.yaml", rec), tmp_path / "run"
    assert run_pipeline(recipe, out, evaluate_fn=_fake_evaluate(root, calls)) == 0
    sft = json.loads((out / "sft" / "summary.json").read_text())
    assert sft["single_stage"]["steps"] == 6 and sft["single_stage"]["wall_s"] > 0
    # evaluated after the SFT model: cpt, sft, then the single-stage model (distillation has no lm-eval run)
    assert [Path(c["model"]["name"]).parent.name for c in calls] == ["cpt", "sft", "single_stage"]
    assert (out / "distill" / "done.json").is_file() and (out / "sft" / "single_stage" / "eval" / "results.json").is_file()
    assert json.loads((out / "timings.json").read_text())["sft"]["single_stage_s"] > 0
    # a run stopped before the ablation finished: --resume trains it in this process, then evaluates and reports it
    import shutil

    for gone in ("model", "eval"):
        shutil.rmtree(out / "sft" / "single_stage" / gone)
    assert run_pipeline(recipe, out, resume=True, evaluate_fn=_fake_evaluate(root, calls)) == 0
    assert (out / "sft" / "single_stage" / "model" / "model.safetensors").is_file()
    assert (out / "sft" / "single_stage" / "eval" / "results.json").is_file()
    assert [Path(c["model"]["name"]).parent.name for c in calls[3:]] == ["single_stage"]


# the ablation's process has exited when SFT's training ends (check 1), only when distillation starts (check 2), or
# not before the end of the run (never)
@pytest.mark.parametrize("done_at", [1, 2, None])
def test_a_finished_ablation_is_collected_at_the_next_check_and_the_threads_come_back(
        world, tmp_path, monkeypatch, done_at):
    """While the ablation's process runs, this process trains on one thread; once it has exited, it is collected
    when SFT's training ends (and evaluated with the SFT model) or when the next phase starts, and what follows runs
    on all threads (the v5 reference run distilled on one thread: 489 s vs 332 s)."""
    from soaes_bench.training import distill as distill_mod
    from soaes_bench.training.sft import Ablation

    root, tok, r = world
    seen = []
    real_distill = distill_mod.run_distill

    def spy(cfg, *a, **k):
        seen.append((torch.get_num_threads(), (tmp_path / "run" / "sft" / "single_stage" / "eval").is_dir()))
        return real_distill(cfg, *a, **k)

    evaluated = []
    fake = _fake_evaluate(root, [])

    def evaluate(model, tokenizer, **kw):
        evaluated.append((Path(kw["model_info"]["name"]).parent.name, torch.get_num_threads()))
        return fake(model, tokenizer, **kw)

    checks = []

    def finished(self):  # deterministic: done from the `done_at`-th check on
        checks.append(1)
        done = done_at is not None and len(checks) >= done_at
        if done:
            self.proc.join()
        return done

    monkeypatch.setattr(distill_mod, "run_distill", spy)
    monkeypatch.setattr(Ablation, "finished", finished)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rec = {"name": "par", "init": r["init"], "tokenizer": r["tokenizer"], "cpt": dict(r["cpt"], gates=[]),
               "sft": dict(r["sft"], gates=[], ablation_in_parallel=True), "distill": dict(r["distill"], gates=[]),
               "evaluation": {"tasks": ["soaes_domain_qa"], "ablation_tasks": ["soaes_domain_qa"], "limit": 2}}
        assert run_pipeline(_write(tmp_path, "r.yaml", rec), tmp_path / "run", evaluate_fn=evaluate) == 0
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
    assert seen == ([(2, True)] if done_at else [(1, False)])  # threads and collected ablation at distillation
    assert dict(evaluated)["sft"] == (2 if done_at == 1 else 1)  # threads of the SFT model's evaluation
    assert after == 2 and (tmp_path / "run" / "sft" / "single_stage" / "eval" / "results.json").is_file()
