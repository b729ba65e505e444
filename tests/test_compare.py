"""compare(): paired CIs over matched items, McNemar, config-hash refusal, and the four output formats."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from fixtures.reporting_runs import PAIRS, make_results

from soaes_bench import cli, stats
from soaes_bench.errors import UserError
from soaes_bench.reporting.compare import compare
from soaes_bench.reporting.comparison_table import format_comparison

RNG = np.random.default_rng(0)
ACC = [float(x) for x in RNG.random(120) < 0.5]
ROUGE = list(RNG.uniform(0, 60, 60))


def _runs(tmp_path, b_acc=ACC, b_rouge=ROUGE, **kw):
    a = make_results(tmp_path / "a", "base", {"soaes_general_mc": {"acc": ACC}, "soaes_domain_qa": {"rouge1": ROUGE}})
    b = make_results(tmp_path / "b", kw.pop("model", "cpt"),
                     {"soaes_general_mc": {"acc": b_acc}, "soaes_domain_qa": {"rouge1": b_rouge}}, **kw)
    return a, b


def _row(df, task, metric):
    return df[(df.task == task) & (df.metric == metric)].iloc[0]


def test_identical_runs_have_zero_interval_and_mcnemar_one(tmp_path):
    a, b = _runs(tmp_path)
    df = compare([a, b], resamples=300)
    acc = _row(df, "soaes_general_mc", "acc")
    assert (acc["diff"], acc.ci_low, acc.ci_high) == (0.0, 0.0, 0.0)
    assert acc.p_mcnemar == 1.0 and acc.ratio == 1.0 and acc.n_shared == 120
    assert acc.ci_method == "paired-bootstrap" and (acc.reference, acc.run) == ("base", "cpt")
    rouge = _row(df, "soaes_domain_qa", "rouge1")
    assert (rouge.ci_low, rouge.ci_high) == (0.0, 0.0) and np.isnan(rouge.p_mcnemar)


def test_clear_difference_excludes_zero(tmp_path):
    better_acc = [1.0 if i % 3 == 0 else x for i, x in enumerate(ACC)]  # fixes a third of the items
    a, b = _runs(tmp_path, b_acc=better_acc, b_rouge=[r + 5 for r in ROUGE])
    df = compare([a, b], resamples=500)
    acc = _row(df, "soaes_general_mc", "acc")
    c = sum(1 for x, y in zip(ACC, better_acc) if x == 0 and y == 1)
    assert acc.ci_low > 0 and acc.ratio_low > 1
    assert acc.p_mcnemar == pytest.approx(2 * 0.5 ** c)  # b = 0 discordant the other way
    rouge = _row(df, "soaes_domain_qa", "rouge1")
    assert rouge["diff"] == pytest.approx(5.0) and rouge.ci_low == pytest.approx(5.0)


def test_items_are_matched_by_id_and_n_shared_reported(tmp_path):
    a, b = _runs(tmp_path)
    samples = tmp_path / "b" / "samples" / "soaes_general_mc.jsonl"
    rows = [json.loads(x) for x in samples.read_text().splitlines()]
    rows = rows[:100][::-1]  # B lost 20 items, and its rows are in another order
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    acc = _row(compare([a, b], resamples=200), "soaes_general_mc", "acc")
    assert acc.n_shared == 100 and acc.ci_low == 0.0 and acc.ci_high == 0.0


def test_refuses_different_task_config_unless_forced(tmp_path):
    a, b = _runs(tmp_path, config="changed")
    with pytest.raises(UserError) as e:
        compare([a, b], resamples=50)
    msg = str(e.value)
    assert "soaes_general_mc" in msg and "cfg-soaes_general_mc" in msg and "changed-soaes_general_mc" in msg
    assert "--force" in msg
    df = compare([a, b], resamples=50, force=True)
    assert _row(df, "soaes_general_mc", "acc").n_shared == 120
    assert cli.main(["compare", str(a), str(b)]) == 2


def test_refuses_different_task_version(tmp_path):
    a, b = _runs(tmp_path, version=2)
    with pytest.raises(UserError, match="version"):
        compare([a, b], resamples=50)


def test_corpus_bleu_and_bits_per_byte_are_resampled_as_corpus_statistics(tmp_path):
    n = 30
    lls = RNG.uniform(-120, -80, n)
    a = make_results(tmp_path / "a", "base", {"soaes_domain_qa": {"bleu4": [0] * n},
                                              "soaes_domain_text": {"bits_per_byte": [[x, 50] for x in lls]}})
    b = make_results(tmp_path / "b", "sft", {"soaes_domain_qa": {"bleu4": [0] * n},
                                             "soaes_domain_text": {"bits_per_byte": [[x + 10, 50] for x in lls]}},
                     preds=[PAIRS[i % len(PAIRS)][1] if i % 2 else PAIRS[i % len(PAIRS)][0] for i in range(n)])
    df = compare([a, b], resamples=300)
    bleu = _row(df, "soaes_domain_qa", "bleu4")
    assert bleu.ci_method == "paired-bootstrap" and bleu.ci_low > 0 and bleu.n_shared == n
    bpb = _row(df, "soaes_domain_text", "bits_per_byte")
    # every document lost 10 nats over 50 bytes: corpus bpb drops by exactly 10/50/ln 2 on every resample
    assert bpb.ci_high == pytest.approx(-10 / 50 / np.log(2)) and not bpb.higher_is_better


def test_stderr_fallback_without_samples(tmp_path):
    a, b = _runs(tmp_path, write_samples=False, b_rouge=[r + 1 for r in ROUGE])
    rouge = _row(compare([a, b], resamples=50), "soaes_domain_qa", "rouge1")
    assert rouge.ci_method == "stderr" and rouge.ci_low < 1.0 < rouge.ci_high and rouge.n_shared == 0


def test_more_than_two_runs_compare_each_to_the_first(tmp_path):
    a, b = _runs(tmp_path)
    c = make_results(tmp_path / "c", "sft", {"soaes_general_mc": {"acc": ACC}})
    df = compare([a, b, c], resamples=50)
    assert set(df.run) == {"cpt", "sft"} and set(df.reference) == {"base"}
    assert "run" in format_comparison(df, "table").splitlines()[0]
    with pytest.raises(UserError, match="at least two"):
        compare([a], resamples=10)


def test_output_formats(tmp_path):
    a, b = _runs(tmp_path, b_rouge=[r + 2 for r in ROUGE])
    df = compare([a, b], resamples=100)
    tex = format_comparison(df, "latex")
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "soaes\\_general\\_mc" in tex
    assert tex.count("\\\\\n") == len(df) + 1
    md = format_comparison(df, "markdown")
    assert md.startswith("| task | metric | base | cpt |") and "|---:|" in md
    table = format_comparison(df, "table").splitlines()
    assert len({len(line) for line in table[:2]}) == 1  # header and rule aligned
    back = pd.read_csv(io.StringIO(format_comparison(df, "csv")))
    assert list(back.columns) == list(df.columns) and len(back) == len(df)


def test_cli_writes_output_by_suffix(tmp_path, capsys):
    a, b = _runs(tmp_path)
    out = tmp_path / "cmp.tex"
    assert cli.main(["compare", str(a), str(b), "--resamples", "50", "--output", str(out)]) == 0
    assert "\\toprule" in out.read_text() and "base" in capsys.readouterr().out
    assert cli.main(["compare", str(a), str(b), "--resamples", "50", "--output", str(tmp_path / "x.docx")]) == 2
    assert "unknown suffix" in capsys.readouterr().err
    assert cli.main(["compare", str(a), str(tmp_path / "missing.json")]) == 2


def test_versions_1_and_1_0_are_the_same_version(tmp_path):
    """pandas stores a task's int version as float in a frame whose group rows have none: 1 and 1.0 must match."""
    import pandas as pd

    from soaes_bench.reporting.compare import check_comparable

    def frame(version):
        return pd.DataFrame({"level": ["task"], "task": ["t"], "config_sha256": ["x"], "version": [version]})

    check_comparable(frame(1), frame(1.0), tmp_path / "a", tmp_path / "b")  # no error
    with pytest.raises(UserError, match="task version differs"):
        check_comparable(frame(1), frame(2.0), tmp_path / "a", tmp_path / "b")


def test_compares_eval_results_only_and_needs_a_shared_task(tmp_path):
    from fixtures.reporting_runs import make_gate

    a, b = _runs(tmp_path)
    gate = make_gate(tmp_path / "cpt" / "gate.json")
    with pytest.raises(UserError, match="run is a gate file, not eval results"):
        compare([a, gate], resamples=10)
    other = make_results(tmp_path / "c", "other", {"soaes_domain_text": {"bits_per_byte": [[-2.0, 1]]}})
    with pytest.raises(UserError, match="no task in common"):
        compare([a, b, other], resamples=10)


# clusters, small sets, multiplicity, power, flips -------------------------------------------------------------------
def _clustered_runs(tmp_path, n_clusters=20, size=10, lost=(0, 1), keys=True):
    """200 items in 20 clusters; B loses every item of the `lost` clusters (a drop concentrated in 2 documents)."""
    n = n_clusters * size
    a_acc = [1.0] * n
    b_acc = [0.0 if i // size in lost else 1.0 for i in range(n)]
    cl = {"soaes_general_mc": [f"news:{i // size}" for i in range(n)]} if keys else None
    a = make_results(tmp_path / "a", "base", {"soaes_general_mc": {"acc": a_acc}}, clusters=cl)
    b = make_results(tmp_path / "b", "cpt", {"soaes_general_mc": {"acc": b_acc}}, clusters=cl)
    return a, b


def test_clusters_are_resampled_by_default_and_items_on_request(tmp_path):
    a, b = _clustered_runs(tmp_path)
    clu = _row(compare([a, b], resamples=1000), "soaes_general_mc", "acc")
    item = _row(compare([a, b], resamples=1000, unit="item"), "soaes_general_mc", "acc")
    assert (clu.unit, int(clu.n_clusters), clu.interval, clu.n_shared) == ("cluster", 20, "bca-expanded", 200)
    assert (item.unit, item.interval) == ("item", "percentile") and pd.isna(item.n_clusters)
    assert clu["diff"] == item["diff"] == pytest.approx(-0.1)
    # 20 items lost in 2 of 20 documents: significant if items were independent, not over documents
    assert item.ci_high < 0 and item.p == item.p_mcnemar == pytest.approx(stats.mcnemar_p(20, 0))
    assert clu.ci_low < item.ci_low and clu.ci_high >= 0 and clu.p == clu.p_bootstrap and clu.p > 0.05
    assert clu.deff == pytest.approx(10.0, rel=0.05)  # the whole cluster moves together: deff = cluster size
    text = format_comparison(compare([a, b], resamples=300), "table")
    assert "200/20" in text and "200 items in 20 clusters; BCa bootstrap, level expanded for 20 clusters" in text


def test_samples_without_cluster_keys_fall_back_to_items_and_say_so(tmp_path):
    a, b = _clustered_runs(tmp_path, keys=False)
    df = compare([a, b], resamples=300)
    row = _row(df, "soaes_general_mc", "acc")
    assert row.unit == "item" and row.unit_note.startswith("no cluster keys") and row.interval == "percentile"
    assert "no cluster keys in the samples, written before they existed: items resampled" in \
        format_comparison(df, "markdown")


def test_small_sets_get_bca_or_no_interval(tmp_path):
    a, b = _runs(tmp_path, b_rouge=[r + 1 for r in ROUGE])  # rouge1: 60 items
    assert _row(compare([a, b], resamples=300), "soaes_domain_qa", "rouge1").interval == "bca"
    few = [f"law:{i % 5}" for i in range(60)]  # 60 items in 5 laws: no 95% interval exists
    a = make_results(tmp_path / "c", "base", {"soaes_domain_qa": {"rouge1": ROUGE}}, clusters={"soaes_domain_qa": few})
    b = make_results(tmp_path / "d", "cpt", {"soaes_domain_qa": {"rouge1": [r + 1 for r in ROUGE]}},
                     clusters={"soaes_domain_qa": few})
    df = compare([a, b], resamples=300)
    row = _row(df, "soaes_domain_qa", "rouge1")
    assert row.interval == "none" and np.isnan(row.ci_low) and row["diff"] == pytest.approx(1.0)
    text = format_comparison(df, "table")
    assert "1.00 [no CI]" in text and "no interval: 5 clusters cannot give this level" in text


def test_holm_and_bh_adjust_the_task_metric_grid(tmp_path):
    better_acc = [1.0 if i % 3 == 0 else x for i, x in enumerate(ACC)]
    a, b = _runs(tmp_path, b_acc=better_acc, b_rouge=[r + RNG.normal(0.5, 5) for r in ROUGE])
    for correction in ("holm", "bh", "none"):
        df = compare([a, b], resamples=2000, correction=correction)
        task = df[df.level == "task"]
        fam = task[task.p.notna()]
        assert len(fam) == 2 and set(fam.correction) == {correction}
        assert list(fam.p_adjusted) == pytest.approx(stats.adjust_p(list(fam.p), correction))
        assert list(fam.significant) == [q <= 0.05 for q in fam.p_adjusted]
        assert df[df.level == "group"].p_adjusted.isna().all()  # group aggregates are not tested
    md = format_comparison(compare([a, b], resamples=2000), "markdown")
    assert "| p | p (Holm) |" in md and "<0.001*" in md and "Holm (family-wise error) adjustment over the 2" in md
    tex = format_comparison(compare([a, b], resamples=2000, correction="bh"), "latex")
    assert "p (BH)" in tex and "<0.001*" in tex.replace("$<$", "<")
    with pytest.raises(UserError, match="--correction"):
        compare([a, b], correction="bonferroni")
    with pytest.raises(UserError, match="--unit"):
        compare([a, b], unit="doc")


def test_holm_warns_when_resamples_are_too_coarse(tmp_path):
    a, b = _runs(tmp_path, b_rouge=[r + 3 for r in ROUGE])
    note = format_comparison(compare([a, b], resamples=50), "table")
    assert "too coarse for Holm over 2" in note and "--resamples 80" in note


def test_mde_win_tie_loss_and_flipped_ids(tmp_path):
    b_acc = list(ACC)
    b_acc[0], b_acc[1] = 1.0 - ACC[0], 1.0 - ACC[1]
    b_rouge = list(ROUGE)
    b_rouge[5] += 10.0
    a, b = _runs(tmp_path, b_acc=b_acc, b_rouge=b_rouge)
    df = compare([a, b], resamples=300)
    acc = _row(df, "soaes_general_mc", "acc")
    won = [f"soaes_general_mc-{i}" for i in (0, 1) if ACC[i] == 0.0]
    lost = [f"soaes_general_mc-{i}" for i in (0, 1) if ACC[i] == 1.0]
    assert (acc.wins, acc.ties, acc.losses) == (len(won), 118, len(lost))
    assert acc.won_ids.split() == won and acc.lost_ids.split() == lost
    d = np.array(b_acc) - np.array(ACC)
    assert acc.se == pytest.approx(d.std(ddof=1) / np.sqrt(120)) and acc.mde == pytest.approx(stats.mde(d.std(ddof=1), 120))
    rouge = _row(df, "soaes_domain_qa", "rouge1")
    assert (rouge.wins, rouge.ties, rouge.losses, rouge.won_ids) == (1, 59, 0, "soaes_domain_qa-5")
    md = format_comparison(df, "markdown")
    assert "<details><summary>soaes_domain_qa rouge1: 1 items won, 0 lost, 59 tied</summary>" in md
    assert "won: `soaes_domain_qa-5`" in md and "</details>" in md
    assert f"{len(won)}/118/{len(lost)}" in format_comparison(df, "table")


def test_bits_per_byte_resamples_documents_of_clusters(tmp_path):
    n = 60
    lls = RNG.uniform(-120, -80, n)
    keys = {"soaes_domain_text": [f"law:{i // 6}" for i in range(n)]}
    a = make_results(tmp_path / "a", "base", {"soaes_domain_text": {"bits_per_byte": [[x, 50] for x in lls]}},
                     clusters=keys)
    b = make_results(tmp_path / "b", "cpt", {"soaes_domain_text": {"bits_per_byte": [[x + 10, 50] for x in lls]}},
                     clusters=keys)
    bpb = _row(compare([a, b], resamples=300), "soaes_domain_text", "bits_per_byte")
    assert (bpb.unit, int(bpb.n_clusters), bpb.interval) == ("cluster", 10, "bca-expanded")
    # every document lost 10 nats over 50 bytes: every resample of documents gives the same drop
    assert bpb.ci_low == pytest.approx(-10 / 50 / np.log(2)) == bpb.ci_high
    assert (bpb.wins, bpb.losses) == (n, 0)  # lower bits per byte wins


def test_cli_unit_and_correction_flags(tmp_path, capsys):
    a, b = _clustered_runs(tmp_path)
    assert cli.main(["compare", str(a), str(b), "--resamples", "200", "--unit", "item", "--correction", "bh"]) == 0
    out = capsys.readouterr().out
    assert "p (BH)" in out and "200 items (--unit item); percentile bootstrap" in out
    assert cli.main(["compare", str(a), str(b), "--unit", "documents"]) == 2
