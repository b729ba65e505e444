"""results.load / validate / load_samples on fixture files of every kind (results, gate, profile)."""

import json
import math

import pytest
from fixtures.reporting_runs import make_gate, make_profile, make_results

from soaes_bench import results
from soaes_bench.errors import UserError

BASE = ["kind", "model", "run", "suite", "group", "task", "metric", "value", "stderr", "n", "higher_is_better",
        "source", "weights_sha256", "tokenizer_sha256", "config_sha256", "version", "date", "seed", "device"]


def _edit(path, fn):
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))
    return path


def test_load_results_rows_and_provenance(tmp_path):
    path = make_results(tmp_path / "a", "base", {"soaes_general_mc": {"acc": [1.0, 0.0, 1.0, 1.0]},
                                                 "soaes_domain_text": {"bits_per_byte": [[-2.0, 1], [-4.0, 3]]}})
    df = results.load(path)
    assert set(BASE) <= set(df.columns)
    tasks = df[df.level == "task"]
    assert len(tasks) == 2 and len(df[df.level == "group"]) == 2
    acc = tasks[tasks.metric == "acc"].iloc[0]
    assert acc.value == 0.75 and acc.higher_is_better and acc.task == "soaes_general_mc"
    assert acc.group == "soaes_general" and acc.n == 4 and acc.version == 1
    assert (acc.model, acc.weights_sha256, acc.tokenizer_sha256, acc.device, acc.seed) == (
        "base", "w-base", "tok", "cpu", 1234)
    assert acc.config_sha256 == "cfg-soaes_general_mc" and acc.kind == "eval"
    assert acc.samples.endswith("samples/soaes_general_mc.jsonl")
    bpb = tasks[tasks.metric == "bits_per_byte"].iloc[0]
    assert not bpb.higher_is_better and bpb.value == pytest.approx(6 / 4 / math.log(2))


def test_load_gate_rows(tmp_path):
    res = make_results(tmp_path / "runs" / "soaes" / "cpt", "cpt-model", {"soaes_general_mc": {"acc": [1.0, 0.0]}})
    gate = make_gate(tmp_path / "runs" / "soaes" / "cpt" / "gate.json", results="results.json", passed=False)
    df = results.load([gate])
    assert list(df.kind.unique()) == ["gate"] and len(df) == 2
    bpb, acc = df.iloc[0], df.iloc[1]
    assert (bpb.metric, bpb.op, bpb.threshold, bpb.value, bpb.ci_lo, bpb.ci_hi) == (
        "bits_per_byte", "<=", 1.9, 1.72, 1.70, 1.74)
    assert not bpb.higher_is_better and bpb.passed
    assert acc.higher_is_better and not acc.passed and math.isnan(acc.ci_lo)
    assert (acc.phase, acc.run, acc.model, acc.check) == ("cpt", "soaes", "cpt-model", "general_mc_kept")
    assert res.is_file()


def test_load_profile_rows_have_dimensions(tmp_path):
    df = results.load(make_profile(tmp_path / "profile.json", draft="d1", alpha=0.7))
    assert set(df.kind) == {"profile"} and set(df.model) == {"target"} and set(df.draft) == {"d1"}
    assert set(df.weights_sha256) == {"w-target"} and set(df.device) == {"cpu"}
    prof = df[df.level == "profile"]
    one = prof[(prof.category == "all") & (prof.gamma == 2) & prof.position.isna()].set_index("metric")
    assert one.at["alpha", "value"] == pytest.approx(0.7)
    assert one.at["tau", "value"] == pytest.approx(1 + 0.7 + 0.49)
    assert one.at["c", "value"] == 0.15 and one.at["measured_over_predicted", "value"] == 0.9
    sp = one.loc["speedup"]
    assert sp.ci_lo < sp.value < sp.ci_hi and sp.context == 40
    assert "hf_assisted_tokens_per_s" not in one.index  # null in the file: no row
    shorts = prof[(prof.metric == "alpha") & (prof.category != "long")]
    assert len(shorts) == 3 * 4 and set(shorts.category) == {"domain", "general", "all"}
    long = prof[(prof.category == "long") & (prof.metric == "speedup")]
    assert sorted(long.context) == [128, 512] and set(long.gamma) == {3}
    pos = prof[(prof.category == "all") & (prof.gamma == 4) & (prof.metric == "acceptance")].sort_values("position")
    assert list(pos.position) == [1, 2, 3, 4] and pos.value.iloc[1] == pytest.approx(0.7 ** 1.5)
    costs = prof[prof.metric == "target_ms"]
    assert sorted(costs.context) == [40, 128, 512] and costs.category.isna().all()
    summary = df[df.level == "summary"].set_index("metric")
    assert summary.at["speedup", "gamma"] == 3 and summary.at["alpha", "category"] == "all"


def test_run_directory_is_searched_recursively(tmp_path):
    make_results(tmp_path / "base", "base", {"soaes_general_mc": {"acc": [1.0]}})
    make_results(tmp_path / "cpt", "cpt", {"soaes_general_mc": {"acc": [0.0]}})
    make_gate(tmp_path / "cpt" / "gate.json")
    make_profile(tmp_path / "deep" / "er" / "profile.json")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "results.json").write_text("not json")
    df = results.load(tmp_path)
    assert set(df.kind) == {"eval", "gate", "profile"}
    assert set(df[df.kind == "eval"].model) == {"base", "cpt"}
    with pytest.raises(UserError, match="2 results.json"):
        results.find_results(tmp_path)
    assert results.find_results(tmp_path / "base").name == "results.json"


@pytest.mark.parametrize("edit,field", [
    (lambda o: o.update(schema="other"), "schema"),
    (lambda o: o.update(schema_version=2), "schema_version"),
    (lambda o: o["tasks"]["soaes_general_mc"]["metrics"]["acc"].pop("value"), "tasks.soaes_general_mc.metrics.acc.value"),
    (lambda o: o["tasks"]["soaes_general_mc"]["metrics"]["acc"].update(value="high"), "metrics.acc.value"),
    (lambda o: o["model"].pop("name"), "model.name"),
    (lambda o: o.update(tasks=[]), "tasks"),
])
def test_bad_results_file_names_file_and_field(tmp_path, edit, field):
    path = _edit(make_results(tmp_path, "m", {"soaes_general_mc": {"acc": [1.0]}}), edit)
    with pytest.raises(UserError) as e:
        results.load(path)
    assert str(path) in str(e.value) and field in str(e.value) and "\n" not in str(e.value)


def test_bad_gate_and_missing_files(tmp_path):
    gate = _edit(make_gate(tmp_path / "gate.json"), lambda o: o["checks"][1].update(ci=[1]))
    with pytest.raises(UserError, match=r"checks\[1\]\.ci"):
        results.load(gate)
    with pytest.raises(UserError, match="file not found"):
        results.load(tmp_path / "nope.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no results.json"):
        results.load(tmp_path / "empty")
    prof = _edit(make_profile(tmp_path / "profile.json"), lambda o: o.update(settings={"gamma": 1}))
    with pytest.raises(UserError, match="settings: expected a list"):
        results.load(prof)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UserError, match="invalid JSON"):
        results.load(tmp_path / "broken.json")


def test_load_samples(tmp_path):
    path = make_results(tmp_path, "m", {"soaes_domain_qa": {"rouge1": [10.0, 20.0, 30.0], "bleu4": [0, 0, 0]},
                                        "soaes_domain_text": {"bits_per_byte": [[-2.0, 1], [-4.0, 3], [-1.0, 1]]}})
    s = results.load_samples(path, "soaes_domain_qa")
    assert list(s.id) == ["soaes_domain_qa-0", "soaes_domain_qa-1", "soaes_domain_qa-2"]
    assert list(s.rouge1) == [10.0, 20.0, 30.0]
    assert all(isinstance(p, list) and len(p) == 2 for p in s.bleu_pair)
    t = results.load_samples(path, "soaes_domain_text")
    assert list(t.loglikelihood) == [-2.0, -4.0, -1.0] and list(t.n_bytes) == [1, 3, 1]
    with pytest.raises(UserError, match="no such task"):
        results.load_samples(path, "nope")
    rows = (tmp_path / "samples" / "soaes_domain_qa.jsonl").read_text().splitlines()
    (tmp_path / "samples" / "soaes_domain_qa.jsonl").write_text("\n".join(rows + rows[:1]) + "\n")
    with pytest.raises(UserError, match="duplicate id"):
        results.load_samples(path, "soaes_domain_qa")


def test_samples_missing_gives_empty_frame(tmp_path):
    path = make_results(tmp_path, "m", {"soaes_general_mc": {"acc": [1.0]}}, write_samples=False)
    assert results.load_samples(path, "soaes_general_mc").empty


def test_metric_direction_defaults():
    assert results.metric_higher_is_better("acc") and results.metric_higher_is_better("rouge1")
    assert results.metric_higher_is_better("target_tokens_per_s")
    assert not results.metric_higher_is_better("bits_per_byte")
    assert not results.metric_higher_is_better("word_perplexity") and not results.metric_higher_is_better("draft_ms")
