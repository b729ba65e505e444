"""Figures: PNG/SVG/PDF written, loadable and not blank; kinds chosen from the inputs; output is deterministic."""

import numpy as np
import pytest
from fixtures.reporting_runs import PAIRS, make_gate, make_profile, make_results

from soaes_bench import cli, results
from soaes_bench.reporting import plots, style

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

    assert sorted(p.suffix for p in paths) == [".pdf", ".png", ".svg"]
    assert all(p.stem == stem and p.stat().st_size > 1000 for p in paths)
    png = next(p for p in paths if p.suffix == ".png")
    img = imread(png)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 600  # 300 dpi
    gray = img[..., :3].mean(axis=2)
    assert gray.std() > 0.05 and (gray < 0.5).mean() > 0.005  # not blank: dark ink on white
    assert next(p for p in paths if p.suffix == ".pdf").read_bytes().startswith(b"%PDF")
    assert "<svg" in next(p for p in paths if p.suffix == ".svg").read_text()


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
    df = plots._with_labels(results.load([prog, single]))
    bleu = df[(df.metric == "bleu4") & (df.label == "sft-single-stage")].iloc[0]
    down, up = plots.interval(bleu)  # no stderr for corpus BLEU: bootstrap over bleu_pair
    assert down > 0 and up > 0
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
    assert plots._phase_rank(label) == rank


def test_plain_text_results_fold_into_their_model_as_task_at_plain(tmp_path):
    """A pipeline's <phase>/eval_plain/ is the same model scored without the chat template: one label per phase,
    with the plain scores as <task>@plain."""
    for phase, (chat, plain) in {"base": ([1, 0, 0, 0], [0, 0, 0, 1]), "cpt": ([1, 1, 0, 0], [1, 0, 1, 1])}.items():
        make_results(tmp_path / phase / "eval", phase, {"soaes_general_mc": {"acc": chat}})
        make_results(tmp_path / phase / "eval_plain", phase, {"soaes_general_mc": {"acc": plain}})
    d = plots._with_labels(results.load([tmp_path]))
    ev = d[(d.kind == "eval") & (d.level == "task") & (d.metric == "acc")]
    assert ev.label.nunique() == 2
    assert len({(r.label, r.task) for r in ev.itertuples()}) == 4
    assert ev[ev.task == "soaes_general_mc@plain"].sort_values("order").value.tolist() == [0.25, 0.75]
