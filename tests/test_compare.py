"""compare(): paired CIs over matched items, McNemar, config-hash refusal, and the four output formats."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from fixtures.reporting_runs import PAIRS, make_results

from soaes_bench import cli
from soaes_bench.errors import UserError
from soaes_bench.reporting.compare import compare, format_comparison

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
