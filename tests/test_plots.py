"""Figures: PNG/SVG/PDF and the CSV table written, loadable and not blank; kinds chosen from the inputs; output is
deterministic; every interval drawn brackets its value and stays inside the metric's bounds, for the committed
reports and for small fixture runs; floors are drawn, missing phases are gaps, runs are named, not pathed."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from fixtures.reporting_runs import PAIRS, make_gate, make_profile, make_results

from soaes_bench import cli, results
from soaes_bench.io import read_json, write_json
from soaes_bench.reporting import figure_data, plots, style

ROOT = Path(__file__).resolve().parents[1]

RNG = np.random.default_rng(0)


def _phase_runs(tmp_path, names=("base", "cpt", "sft_stage2")):
    paths = []
    for k, name in enumerate(names):
        paths.append(make_results(tmp_path / name, name, {
            "soaes_general_mc": {"acc": [float(x) for x in RNG.random(60) < 0.3 + 0.1 * k]},
            "soaes_domain_text": {"bits_per_byte": [[-RNG.uniform(80, 100) + 8 * k, 50] for _ in range(20)]},
            "soaes_domain_qa": {"rouge1": list(RNG.uniform(5, 20, 20) + 5 * k), "bleu4": [0] * 20}},
            preds=[PAIRS[i % 5][1] if i % 3 < k else PAIRS[i % 5][0] for i in range(20)]))
    return paths


def _assert_figure(paths, stem):
    from matplotlib.image import imread

    assert sorted(p.suffix for p in paths) == [".csv", ".pdf", ".png", ".svg"]
    assert all(p.stem == stem and p.stat().st_size > 1000 for p in paths if p.suffix != ".csv")
    png = next(p for p in paths if p.suffix == ".png")
    img = imread(png)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 600  # 300 dpi
    gray = img[..., :3].mean(axis=2)
    assert gray.std() > 0.05 and (gray < 0.5).mean() > 0.005  # not blank: dark ink on white
    assert next(p for p in paths if p.suffix == ".pdf").read_bytes().startswith(b"%PDF")
    assert "<svg" in next(p for p in paths if p.suffix == ".svg").read_text()
    _assert_table(next(p for p in paths if p.suffix == ".csv"))


def _assert_table(path):
    """Every row the figure draws: lo <= value <= hi, and inside the metric's bounds; returns the rows."""
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert rows and list(rows[0])[:8] == ["label", "task", "metric", "value", "lo", "hi", "n", "method"]
    for r in rows:
        v = float(r["value"])
        a, b = figure_data.metric_bounds(r["metric"])
        assert a <= v <= b, r
        if r["lo"] or r["hi"]:
            lo, hi = float(r["lo"]), float(r["hi"])
            assert lo <= v <= hi, r
            assert a <= lo and hi <= b, r
            assert r["method"] != figure_data.METHODS["none"]
        else:
            assert "no interval" in r["method"], r
        assert "/" not in r["label"], r  # runs are named by model or phase, not by a path
    return rows


def test_phase_progression_figure(tmp_path):
    paths = plots.plot(_phase_runs(tmp_path), output=tmp_path / "fig")  # auto -> phases
    _assert_figure(paths, "phases")


def test_profile_and_distillation_figures(tmp_path):
    u = make_profile(tmp_path / "u" / "profile.json", draft="draft-undistilled", alpha=0.5)
    d = make_profile(tmp_path / "d" / "profile.json", draft="draft-distilled", alpha=0.75)
    _assert_figure(plots.plot([d], output=tmp_path / "fig"), "profile")
    _assert_figure(plots.plot([u, d], output=tmp_path / "fig"), "distillation")


def test_auto_kind_follows_the_inputs(tmp_path):
    phases = results.load(_phase_runs(tmp_path / "p", names=("base", "cpt")))
    assert plots.auto_kinds(phases) == ["phases"]
    single = make_results(tmp_path / "s", "sft-single-stage", {"soaes_domain_qa": {"rouge1": [1.0, 2.0]}})
    prog = make_results(tmp_path / "g", "sft-progressive", {"soaes_domain_qa": {"rouge1": [2.0, 3.0]}})
    assert plots.auto_kinds(results.load([single, prog])) == ["sft-ablation"]
    other = make_results(tmp_path / "o", "qwen-mini", {"soaes_domain_qa": {"rouge1": [2.0, 3.0]}})
    assert plots.auto_kinds(results.load([single, other])) == ["models"]
    gate = make_gate(tmp_path / "gate.json")
    prof = make_profile(tmp_path / "profile.json")
    assert plots.auto_kinds(results.load([gate, prof])) == ["phases", "profile"]


def test_sft_ablation_orders_single_stage_first_and_has_ci(tmp_path):
    prog = make_results(tmp_path / "g", "sft-progressive", {"soaes_domain_qa": {
        "rouge1": list(RNG.uniform(10, 30, 20)), "bleu4": [0] * 20}}, preds=[p[1] for p in PAIRS] * 4)
    single = make_results(tmp_path / "s", "sft-single-stage", {"soaes_domain_qa": {
        "rouge1": list(RNG.uniform(5, 25, 20)), "bleu4": [0] * 20}})
    df = figure_data.with_labels(results.load([prog, single]))
    bleu = df[(df.metric == "bleu4") & (df.label == "sft-single-stage")].iloc[0]
    down, up = figure_data.interval(bleu)  # no stderr for corpus BLEU: bootstrap over bleu_pair
    assert down > 0 and up > 0
    assert figure_data.value_interval(bleu).kind == "bleu"
    _assert_figure(plots.plot_sft_ablation(results.load([prog, single]), tmp_path / "sft"), "sft")


def test_saving_is_deterministic(tmp_path):
    def draw(stem):
        with style.paper():
            fig, axes = style.figure(width=3, height=2)
            for i in range(3):
                s = style.series(i)
                axes[0, 0].plot([0, 1, 2], [i, i + 1, i * 2], marker=s["marker"], linestyle=s["linestyle"],
                                label=f"series {i}")
            axes[0, 0].legend()
            return style.save(fig, stem)

    first = {p.suffix: p.read_bytes() for p in draw(tmp_path / "a" / "fig")}
    second = {p.suffix: p.read_bytes() for p in draw(tmp_path / "b" / "fig")}
    assert first == second
    assert b"CreationDate" not in first[".pdf"] and b"<dc:date>" not in first[".svg"]


def test_series_differ_without_colour():
    styles = [style.series(i) for i in range(4)]
    assert len({s["hatch"] for s in styles}) == 4 and len({s["marker"] for s in styles}) == 4


def test_cli_plot(tmp_path, capsys):
    prof = make_profile(tmp_path / "profile.json")
    assert cli.main(["plot", str(prof), "--kind", "nope", "--output", str(tmp_path / "f")]) == 2
    assert "--kind" in capsys.readouterr().err
    one = make_results(tmp_path / "r", "m", {"soaes_general_mc": {"acc": [1.0, 0.0]}})
    assert cli.main(["plot", str(one), "--kind", "profile", "--output", str(tmp_path / "f")]) == 2
    assert "no profile rows" in capsys.readouterr().err


@pytest.mark.parametrize("label,rank", [("base", 0), ("cpt-run", 1), ("sft_stage1", 2), ("sft", 8), ("xyz", None)])
def test_phase_order(label, rank):
    assert figure_data.phase_rank(label) == rank


def test_plain_text_results_fold_into_their_model_as_task_at_plain(tmp_path):
    """A pipeline's <phase>/eval_plain/ is the same model scored without the chat template: one label per phase,
    with the plain scores as <task>@plain."""
    for phase, (chat, plain) in {"base": ([1, 0, 0, 0], [0, 0, 0, 1]), "cpt": ([1, 1, 0, 0], [1, 0, 1, 1])}.items():
        make_results(tmp_path / phase / "eval", phase, {"soaes_general_mc": {"acc": chat}})
        make_results(tmp_path / phase / "eval_plain", phase, {"soaes_general_mc": {"acc": plain}})
    d = figure_data.with_labels(results.load([tmp_path]))
    ev = d[(d.kind == "eval") & (d.level == "task") & (d.metric == "acc")]
    assert ev.label.nunique() == 2
    assert len({(r.label, r.task) for r in ev.itertuples()}) == 4
    assert ev[ev.task == "soaes_general_mc@plain"].sort_values("order").value.tolist() == [0.25, 0.75]


# intervals, floors, gaps and names ----------------------------------------------------------------------------------
def _with_floors(path, floors):
    """Add a results.json `floors` block ({task: {metric: value}}), as `soaes-bench run` writes it."""
    obj = read_json(path)
    for task, fl in floors.items():
        obj["tasks"][task]["floors"] = {m: {"name": "always A", "value": v} for m, v in fl.items()}
    return write_json(path, obj)


def _capture(monkeypatch):
    """The matplotlib Figure a plot function saves (style.save is replaced: nothing rendered)."""
    figs = []

    def save(fig, stem, formats=style.FORMATS):
        figs.append(fig)
        return []

    monkeypatch.setattr(plots.style, "save", save)
    return figs


def test_bits_per_byte_interval_is_the_corpus_ratios_and_brackets_it(tmp_path):
    """The point is Σ bits / Σ bytes; a bootstrap of the mean of per-document bits per byte (the old bars) missed
    it when long documents are the easy ones. The interval now resamples documents and recomputes the ratio."""
    docs = [[-0.5 * 2000 * math.log(2), 2000]] * 10 + [[-6.0 * 20 * math.log(2), 20]] * 10  # 0.5 and 6 bits per byte
    run = make_results(tmp_path / "r", "base", {"soaes_domain_text": {"bits_per_byte": docs}})
    row = results.load(run).query("metric == 'bits_per_byte'").iloc[0]
    ratio = (0.5 * 2000 * 10 + 6.0 * 20 * 10) / (2020 * 10)
    assert row.value == pytest.approx(ratio)  # 0.554, while the mean of documents is 3.25
    lo, hi, n, method, _, kind = figure_data.value_interval(row)
    assert kind == "ratio" and n == 20 and "Σ bits / Σ bytes" in method
    assert lo <= row.value <= hi and hi < 3.25


def test_bounded_metrics_stay_inside_their_bounds_without_samples(tmp_path):
    """ROUGE near 0 with only a stderr: value ± 1.96 se would go below 0; the logit-scale interval does not."""
    vals = [0.0] * 198 + [25.0] * 2  # mean 0.25, stderr 0.176: the normal interval goes to -0.095
    run = make_results(tmp_path / "r", "base", {"soaes_general_gen": {"rouge1": vals}}, write_samples=False)
    row = results.load(run).query("metric == 'rouge1'").iloc[0]
    assert row.value - 1.96 * row.stderr < 0
    lo, hi, _, _, _, kind = figure_data.value_interval(row)
    assert kind == "logit" and 0 < lo <= row.value <= hi < 100
    acc = make_results(tmp_path / "a", "base", {"soaes_general_mc": {"acc": [1.0] * 39 + [0.0]}}, write_samples=False)
    row = results.load(acc).query("metric == 'acc'").iloc[0]
    lo, hi = figure_data.value_interval(row)[:2]
    assert 0 < lo <= row.value <= hi < 1


def test_every_fixture_figure_row_brackets_its_value(tmp_path):
    runs = _phase_runs(tmp_path)
    for r in runs:
        _with_floors(r, {"soaes_general_mc": {"acc": 0.3}, "soaes_domain_qa": {"rouge1": 12.0, "bleu4": 2.0}})
    for kind in ("phases", "models"):
        paths = plots.plot(runs, kind, tmp_path / "fig")
        rows = _assert_table(next(p for p in paths if p.suffix == ".csv"))
        assert {r["label"] for r in rows} == {"base", "cpt", "sft_stage2"}
        assert {r["floor"] for r in rows if r["task"] == "soaes_general_mc"} == {"0.3"}


COMMITTED = [  # the commands that draw the committed figures (Makefile `reports` and `reference`)
    ("phases", ["reports/base", "reports/reference/cpt/eval", "reports/baseline"]),
    ("models", ["reports/untrained", "reports/base", "reports/baseline"]),
    ("sft-ablation", ["reports/reference/sft/single_stage/eval", "reports/reference/sft/eval"]),
    ("models", ["reports/reference"]),
    ("distillation", ["reports/profile_undistilled/profile.json", "reports/profile_steady/profile.json"]),
]


@pytest.mark.parametrize("kind,inputs", COMMITTED, ids=[f"{k}:{i[0]}" for k, i in COMMITTED])
def test_committed_report_figures_bracket_and_respect_bounds(kind, inputs, tmp_path, monkeypatch):
    if not all((ROOT / p).exists() for p in inputs):
        pytest.skip("committed reports not in this checkout")
    _capture(monkeypatch)  # the table is what is checked; rendering adds nothing to it
    paths = plots.plot([ROOT / p for p in inputs], kind, tmp_path)
    rows = _assert_table(paths[-1])
    if kind != "distillation":
        assert all(r["lo"] and r["hi"] for r in rows)  # every committed eval row has samples: every bar is known
        assert any(r["floor"] for r in rows)


def test_phases_draw_gaps_floors_and_say_n_and_method(tmp_path, monkeypatch):
    """cpt ran only the bits-per-byte task: mc's line has a gap at cpt (NaN), not a segment base -> sft through it;
    each task's floor is a dashed line; legends give n; the caption names the interval methods."""
    base = make_results(tmp_path / "base", "base", {"soaes_general_mc": {"acc": [1.0, 0.0] * 30},
                                                      "soaes_domain_text": {"bits_per_byte": [[-80.0, 50]] * 20}})
    cpt = make_results(tmp_path / "cpt" / "eval", "runs/x/cpt/model",
                       {"soaes_domain_text": {"bits_per_byte": [[-70.0, 50]] * 20}})
    sft = make_results(tmp_path / "sft", "sft", {"soaes_general_mc": {"acc": [1.0, 1.0, 0.0] * 20},
                                                 "soaes_domain_text": {"bits_per_byte": [[-75.0, 50]] * 20}})
    _with_floors(base, {"soaes_general_mc": {"acc": 0.3}})
    figs = _capture(monkeypatch)
    paths = plots.plot([base, cpt, sft], "phases", tmp_path / "fig")
    (fig,) = figs
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["base", "cpt", "sft"]  # not runs/x/cpt/model
    mc = next(ax for ax in axes if "accuracy" in ax.get_title())
    ys = [np.asarray(line.get_ydata(), float) for line in mc.lines]
    data = next(y for y in ys if len(y) == 3)
    assert np.isnan(data[1]) and data[0] == pytest.approx(0.5) and data[2] == pytest.approx(2 / 3)
    floor = [line for line in mc.lines if line.get_linestyle() == "--" and len(line.get_ydata()) == 2]
    assert floor and floor[0].get_ydata()[0] == pytest.approx(0.3)
    legend = [t.get_text() for t in mc.get_legend().get_texts()]
    assert legend == ["mc (n=60)"]
    caption = " ".join(fig.get_supxlabel().split())
    assert "Clopper-Pearson" in caption and "BCa bootstrap, of the corpus ratio Σ bits / Σ bytes" in caption
    assert "floor" in caption
    rows = _assert_table(paths[-1])
    assert not [r for r in rows if r["label"] == "cpt" and r["task"] == "soaes_general_mc"]


def test_labels_name_the_inputs(tmp_path, capsys):
    a = make_results(tmp_path / "a", "runs/ref/sft/single_stage/model", {"soaes_domain_qa": {"rouge1": [1.0, 2.0]}})
    b = make_results(tmp_path / "b", "runs/ref/sft/model", {"soaes_domain_qa": {"rouge1": [2.0, 3.0]}})
    d = figure_data.with_labels(results.load([a, b]))
    assert set(d.label) == {"sft single-stage", "sft"}
    paths = plots.plot([a, b], "models", tmp_path / "f", labels="one-stage,two-stage")
    assert {r["label"] for r in _assert_table(paths[-1])} == {"one-stage", "two-stage"}
    assert cli.main(["plot", str(a), str(b), "--labels", "x", "--output", str(tmp_path / "g")]) == 2
    assert "--labels" in capsys.readouterr().err


def _with_clusters(results_path, task, clusters):
    """Give each sample row of `task` a cluster key (its source document), as samples written with clusters carry."""
    from soaes_bench.io import read_jsonl, write_jsonl

    path = Path(results_path).parent / "samples" / f"{task}.jsonl"
    rows = read_jsonl(path)
    write_jsonl(path, [{**r, "cluster": clusters(i)} for i, r in enumerate(rows)])


def test_clustered_samples_resample_documents_and_few_clusters_get_no_bar(tmp_path):
    """With cluster keys the bars resample source documents (never narrower than items); with 3 documents no
    interval can be 95%, so none is drawn and the table says why."""
    acc = [float(x) for x in RNG.random(120) < 0.4]
    many = make_results(tmp_path / "m", "base", {"soaes_general_mc": {"acc": acc}})
    _with_clusters(many, "soaes_general_mc", lambda i: f"law-{i // 6}")  # 20 documents of 6 items
    few = make_results(tmp_path / "f", "sft", {"soaes_general_mc": {"acc": acc}})
    _with_clusters(few, "soaes_general_mc", lambda i: f"law-{i % 3}")
    items = make_results(tmp_path / "i", "cpt", {"soaes_general_mc": {"acc": acc}})
    rows = {r.label: r for r in figure_data.measure(figure_data.with_labels(results.load([many, few, items]))).query(
        "metric == 'acc' and level == 'task'").itertuples()}
    assert "20 source documents" in rows["base"].method
    assert rows["base"].lo <= rows["cpt"].lo and rows["base"].hi >= rows["cpt"].hi  # never narrower than items
    assert math.isnan(rows["sft"].lo) and "3 clusters cannot give" in rows["sft"].method
    table = _assert_table(plots.plot([many, few, items], "models", tmp_path / "fig")[-1])
    assert [r["lo"] for r in table if r["label"] == "sft"] == [""]
