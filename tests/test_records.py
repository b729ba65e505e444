"""soaes_bench.records: round trips per kind, what readers refuse (wrong kind, missing field, NaN, samples outside
the run folder), one provenance definition, and the committed reports still loading."""

import ast
import hashlib
import json
import math
from pathlib import Path

import pytest
from fixtures.reporting_runs import make_gate, make_profile, make_results

from soaes_bench import records, results
from soaes_bench.errors import UserError
from soaes_bench.io import read_json, write_json, write_jsonl
from soaes_bench.records import provenance

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p for p in (ROOT / "reports").rglob("*.json")
                   if p.name in records.FILE_NAMES)


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def _results_obj(**task_fields):
    task = {"group": "g", "version": 1, "config_sha256": "c", "n": 2, "higher_is_better": {"acc": True},
            "metrics": {"acc": {"value": 0.5, "stderr": 0.5}}, "samples": "samples/t.jsonl", **task_fields}
    return records.results.new(model={"name": "m"}, env={"device": "cpu"}, tasks={"t": task},
                               groups={"g": {"metrics": {"acc": {"value": 0.5, "stderr": None}}, "n": 2}},
                               suite="all", seed=1, date="2026-01-01T00:00:00Z")


# round trips ------------------------------------------------------------------------------------------------------
def _gate():
    return records.gate.new(phase="cpt", passed=True, results="eval/results.json", alpha=0.05,
                            checks=[{"name": "n", "metric": "acc", "task": "t", "value": 0.5, "threshold": 0.4,
                                     "ci": [0.4, 0.6], "passed": True}])


BUILT = {
    "eval": _results_obj,
    "gate": _gate,
    "ablation": lambda: records.ablation.new("sft", [{"task": "t", "metric": "rouge1", "single": 1.0,
                                                     "progressive": 2.0, "diff": 1.0, "ci_low": 0.5, "ci_high": 1.5}],
                                            single="a", progressive="b", resamples=10, seed=0),
    "forgetting": lambda: records.forgetting.new(metric="accuracy", base="a", new="b", rows=[
        {"suite": "general", "task": "t", "metric": "acc", "n_shared": 4, "base_correct": 2, "new_correct": 3,
         "base_acc": 0.5, "new_acc": 0.75, "both_right": 2, "both_wrong": 1, "forgotten": 0, "learned": 1,
         "net": 1, "forgotten_rate": 0.0, "retention": 1.5, "p_mcnemar": 1.0}]),
    "summary": lambda: records.summary.stamp({"phase": "cpt", "config": {}, "stopped_by": "done", "steps": 3,
                                              "val_before": {"val_loss": 2.0}, "val_after": {"val_loss": 1.5}}),
    "timings": lambda: records.timings.stamp({"processes": 1, "base_eval_s": 1.5, "cpt": {"train_s": 2.0}}),
}


@pytest.mark.parametrize("kind", sorted(BUILT))
def test_each_kind_round_trips_through_its_module(tmp_path, kind):
    obj = BUILT[kind]()
    module = records.BY_KIND[kind]
    assert obj["schema"] == module.SCHEMA and obj["schema_version"] == module.VERSION
    path = records.write(tmp_path / module.FILE_NAME, obj)
    assert module.read(path) == obj == read_json(path)
    assert records.kind_of(path) == records.kind_of(obj) == kind
    assert records.read(path) == (kind, obj)
    assert len(results.load([path])) > 0  # every kind gives rows


def test_profile_round_trips_and_its_rows_come_from_the_schema_fields(tmp_path):
    obj = read_json(make_profile(tmp_path / "in.json"))
    path = records.profile.write(tmp_path / "profile.json", obj)
    assert records.profile.read(path) == obj and records.kind_of(path) == "profile"
    df = results.load(path)
    assert set(df.metric) - {"acceptance", "conditional_acceptance"} <= set(
        records.profile.SETTING_METRICS + records.profile.COST_METRICS + records.profile.VERIFY_METRICS)
    assert set(df[df.level == "summary"].metric) <= set(records.profile.SUMMARY_METRICS)


def test_samples_round_trip_and_kind(tmp_path):
    rows = [{"id": "a", "doc_id": 0, "metrics": {"acc": 1.0}, "target": "A", "prediction": "A"},
            {"id": 7, "doc_id": 1, "metrics": {"acc": None}, "bleu_pair": ["x", "y"]}]
    path = records.samples.write(tmp_path / "samples" / "t.jsonl", rows)
    assert records.samples.read(path) == rows and records.kind_of(path) == "samples"


def test_rows_of_ablation_forgetting_summary_and_timings(tmp_path):
    paths = {k: records.write(tmp_path / k / "x" / records.BY_KIND[k].FILE_NAME, BUILT[k]())
             for k in ("ablation", "forgetting", "summary", "timings")}
    df = results.load(list(paths.values()))
    abl = df[df.kind == "ablation"].set_index("arm")
    assert abl.at["single", "value"] == 1.0 and abl.at["progressive", "value"] == 2.0
    assert (abl.at["progressive - single", "value"], abl.at["progressive - single", "ci_lo"]) == (1.0, 0.5)
    fg = df[df.kind == "forgetting"]
    assert set(fg[fg.level == "arm"].arm) == {"base", "new"}
    assert fg[fg.metric == "learned"].value.iloc[0] == 1 and not fg[fg.metric == "forgotten"].higher_is_better.iloc[0]
    sm = df[(df.kind == "summary") & (df.level == "arm")].set_index("arm")
    assert (sm.at["before", "value"], sm.at["after", "value"]) == (2.0, 1.5) and sm.phase.iloc[0] == "cpt"
    tm = df[df.kind == "timings"].set_index("metric")
    assert tm.at["train_s", "phase"] == "cpt" and tm.at["base_eval_s", "value"] == 1.5
    # a folder is searched for results/gate/profile only; these kinds load when named
    with pytest.raises(UserError, match="no results.json"):
        results.load(tmp_path)


# what readers refuse ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("edit,field", [
    (lambda o: o.pop("tasks"), "tasks: required field is missing"),
    (lambda o: o.update(kind="gate"), "kind: expected 'eval'"),
    (lambda o: o["tasks"]["t"]["metrics"]["acc"].pop("value"), "tasks.t.metrics.acc.value: required"),
    (lambda o: o["tasks"]["t"]["metrics"]["acc"].update(value=math.inf), "tasks.t.metrics.acc.value"),
    (lambda o: o["tasks"]["t"]["metrics"]["acc"].update(stderr=math.nan), "tasks.t.metrics.acc.stderr"),
    (lambda o: o["tasks"]["t"].update(samples="../../etc/t.jsonl"), "tasks.t.samples: '../../etc/t.jsonl' leaves"),
    (lambda o: o["tasks"]["t"].update(samples="/tmp/t.jsonl"), "tasks.t.samples: '/tmp/t.jsonl' must be a path"),
    (lambda o: o["tasks"]["t"].update(floors={"acc": {"name": "always A", "value": math.nan}}), "floors.acc.value"),
    (lambda o: o["groups"]["g"]["metrics"]["acc"].update(value="x"), "groups.g.metrics.acc.value"),
])
def test_results_validator_names_file_and_field(tmp_path, edit, field):
    obj = _results_obj()
    edit(obj)
    with pytest.raises(UserError) as e:
        records.results.write(tmp_path / "results.json", obj)
    msg = _one_line(e)
    assert msg.startswith(str(tmp_path / "results.json")) and field in msg
    assert not (tmp_path / "results.json").exists()  # nothing written


def test_wrong_kind_is_refused_naming_both_kinds(tmp_path):
    gate = make_gate(tmp_path / "gate.json")
    with pytest.raises(UserError) as e:
        records.results.read(gate)
    assert "soaes-bench/results" in _one_line(e) and "'soaes-bench/gate'" in str(e.value)
    with pytest.raises(UserError, match="no schema field"):
        records.kind_of({"tasks": {}})
    (tmp_path / "x.json").write_text('{"schema": "other/thing", "schema_version": 1}')
    with pytest.raises(UserError, match="unknown schema 'other/thing'"):
        records.read(tmp_path / "x.json")
    with pytest.raises(UserError, match="newer than this soaes-bench reads"):
        records.validate({**_gate(), "schema_version": 2}, "g.json")


@pytest.mark.parametrize("kind,edit,field", [
    ("gate", lambda o: o["checks"][0].pop("passed"), "checks[0].passed"),
    ("gate", lambda o: o["checks"][0].update(ci=[1]), "checks[0].ci"),
    ("ablation", lambda o: o.update(ablation="other"), "ablation: expected one of sft, distill"),
    ("ablation", lambda o: o["rows"][0].pop("progressive"), "rows[0].progressive"),
    ("forgetting", lambda o: o["rows"][0].update(learned=1.5), "rows[0].learned"),
    ("summary", lambda o: o.pop("phase"), "phase: required"),  # version 1; files before it need none
    ("summary", lambda o: o["val_after"].update(val_loss=math.inf), "val_after.val_loss"),
    ("timings", lambda o: o["cpt"].update(train_s="slow"), "cpt.train_s"),
])
def test_other_validators_name_the_field(tmp_path, kind, edit, field):
    obj = BUILT[kind]()
    edit(obj)
    with pytest.raises(UserError) as e:
        records.write(tmp_path / "f.json", obj)
    assert field in _one_line(e)


def test_json_writers_refuse_and_readers_reject_nan(tmp_path):
    with pytest.raises(UserError) as e:
        write_json(tmp_path / "a.json", {"tasks": {"t": {"metrics": {"acc": {"value": float("nan")}}}}})
    assert "a.json: tasks.t.metrics.acc.value: nan" in _one_line(e) and not (tmp_path / "a.json").exists()
    with pytest.raises(UserError, match=r"b.jsonl:2: metrics.x: inf"):
        write_jsonl(tmp_path / "b.jsonl", [{"metrics": {"x": 1.0}}, {"metrics": {"x": float("inf")}}])
    (tmp_path / "c.json").write_text('{"rows": [{"v": 1}, {"v": NaN}]}')
    with pytest.raises(UserError) as e:
        read_json(tmp_path / "c.json")
    assert "c.json: rows[1].v: NaN" in _one_line(e)
    path = make_results(tmp_path / "run", "m", {"soaes_general_mc": {"acc": [1.0, 0.0]}})
    samples = tmp_path / "run" / "samples" / "soaes_general_mc.jsonl"
    samples.write_text(samples.read_text().replace('"acc": 0.0', '"acc": -Infinity'))
    with pytest.raises(UserError, match=r"soaes_general_mc.jsonl:2: metrics.acc: -Infinity"):
        results.load_samples(path, "soaes_general_mc")


def test_samples_outside_the_run_folder_are_refused(tmp_path):
    path = make_results(tmp_path / "run", "m", {"soaes_general_mc": {"acc": [1.0, 0.0]}})
    obj = json.loads(path.read_text())
    obj["tasks"]["soaes_general_mc"]["samples"] = "../../other/samples/soaes_general_mc.jsonl"
    path.write_text(json.dumps(obj))
    with pytest.raises(UserError) as e:
        results.load_samples(path, "soaes_general_mc")
    assert "tasks.soaes_general_mc.samples" in _one_line(e) and "leaves the run folder" in str(e.value)
    # a symlink inside the folder that points out of it is refused too
    make_results(tmp_path / "other", "m", {"soaes_general_mc": {"acc": [1.0, 0.0]}})
    obj["tasks"]["soaes_general_mc"]["samples"] = "samples/soaes_general_mc.jsonl"
    path.write_text(json.dumps(obj))
    link = tmp_path / "run" / "samples" / "soaes_general_mc.jsonl"
    link.unlink()
    link.symlink_to(tmp_path / "other" / "samples" / "soaes_general_mc.jsonl")
    with pytest.raises(UserError, match="resolves outside the run folder"):
        results.load_samples(path, "soaes_general_mc")


def test_legacy_summary_and_timings_without_schema_still_read(tmp_path):
    (tmp_path / "cpt").mkdir()
    write_json(tmp_path / "cpt" / "summary.json", {"phase": "cpt", "config": {}, "stopped_by": "done"})
    write_json(tmp_path / "timings.json", {"processes": 1, "cpt": {"train_s": 1.0}})
    assert records.kind_of(tmp_path / "cpt" / "summary.json") == "summary"
    assert records.read(tmp_path / "timings.json")[0] == "timings"
    write_json(tmp_path / "other.json", {"phase": "cpt"})  # the same object under another name is no record
    with pytest.raises(UserError, match="no schema field"):
        records.read(tmp_path / "other.json")


# provenance ---------------------------------------------------------------------------------------------------------
def _sha_files(*files):
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def test_one_provenance_definition(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights")
    (d / "config.json").write_text("{}")
    for name, text in (("tokenizer.json", "{}"), ("tokenizer_config.json", "{}"), ("chat_template.jinja", "A")):
        (d / name).write_text(text)
    block = provenance.model_block(None, d)
    assert block["name"] == "model" and block["n_params"] == 0 and block["layers"] is None
    assert block["weights_sha256"] == _sha_files(d / "model.safetensors")
    assert block["tokenizer_sha256"] == _sha_files(d / "tokenizer.json", d / "tokenizer_config.json",
                                                   d / "chat_template.jinja")
    (d / "chat_template.jinja").write_text("B")  # another chat template: another tokenizer hash, same weights
    again = provenance.model_block(None, d)
    assert again["tokenizer_sha256"] != block["tokenizer_sha256"]
    assert again["weights_sha256"] == block["weights_sha256"]
    bare = tmp_path / "bare"
    bare.mkdir()  # no tokenizer files: the shared tokenizer is the one that loads, and is hashed
    assert provenance.tokenizer_sha256(bare) == provenance.tokenizer_sha256(provenance.TOKENIZER_DIR)
    assert provenance.model_block(None, name="constant")["weights_sha256"] is None


def test_model_paths_are_repository_relative(monkeypatch):
    monkeypatch.chdir(ROOT)
    target = ROOT / "soaes_bench" / "assets" / "models" / "target"
    assert provenance.model_block(None, target)["path"] == "soaes_bench/assets/models/target"


def test_env_block_keys():
    env = provenance.env_block("cpu", chat_template=True)
    assert {"soaes_bench", "lm_eval", "torch", "transformers", "python", "device", "device_name", "threads",
            "chat_template"} == set(env)
    assert env["device"] == "cpu" and env["chat_template"] is True


# committed reports and layering -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_reports_still_load(path):
    kind, obj = records.read(path)
    assert kind == records.kind_of(path) and len(results.load([path])) > 0


def test_committed_results_agree_with_their_samples():
    from soaes_bench.reporting.check import verify_samples

    checked = [p for p in COMMITTED if p.name == "results.json"]
    assert len(checked) >= 10
    for p in checked:
        verify_samples(p)


ALLOWED = {"soaes_bench", "soaes_bench.errors", "soaes_bench.io", "soaes_bench.config", "soaes_bench.paths",
           "soaes_bench.stats", "soaes_bench.records"}


@pytest.mark.parametrize("path", sorted((ROOT / "soaes_bench" / "records").glob("*.py"))
                         + [ROOT / "soaes_bench" / "results.py"], ids=lambda p: p.name)
def test_records_layer_imports_only_base_modules(path):
    """records/ and results.py sit right above the base layer: no measuring or reporting import, even in a function."""
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        for name in names:
            if name.startswith("soaes_bench"):
                assert name in ALLOWED or name.startswith("soaes_bench.records."), f"{path.name} imports {name}"
