"""`soaes-bench calibrate`: the tolerance rule on known spreads, the policy file check reads back, and the CLI round
trip on the content-free model (fast: no weights)."""

import pandas as pd
import pytest
import yaml
from fixtures.reporting_runs import make_results

from soaes_bench import cli
from soaes_bench.errors import UserError
from soaes_bench.reporting import calibrate as cal
from soaes_bench.reporting.check import check, load_policy


@pytest.mark.parametrize("metric,values,n,absolute,relative,rule", [
    # never moved: one item's full swing U/n (1/240 rounded up to 3 digits)
    ("acc", [0.3, 0.3, 0.3], 240, 0.00417, None, "floor 1/240"),
    # one item moved in one run: 3 x 1/240 = 0.0125 beats the floor
    ("acc", [0.3, 0.3, 0.3 + 1 / 240], 240, 0.0125, None, "3 x spread"),
    # ROUGE on 0-100: 3 x 0.3 = 0.9 > 100/200 = 0.5 ...
    ("rouge1", [9.2, 9.5, 9.3], 200, 0.9, None, "3 x spread"),
    # ... and 3 x 0.1 = 0.3 < 0.5
    ("rouge1", [3.0, 3.1], 200, 0.5, None, "floor 100/200"),
    ("bleu4", [1.5666, 1.5666], 200, 0.5, None, "floor 100/200"),
    # unbounded: 3 x spread in bits, and 0.1% of the baseline as the floor (check takes the larger)
    ("bits_per_byte", [2.0, 2.00001, 2.000005], 250, 3e-05, 0.001, "3 x spread or 0.1% of baseline"),
    ("bits_per_byte", [2.5, 2.5], 250, 0.0, 0.001, "3 x spread or 0.1% of baseline"),
    ("length_ratio", [0.9, 0.95], 200, 0.15, 0.001, "3 x spread or 0.1% of baseline"),
])
def test_derive_known_spreads(metric, values, n, absolute, relative, rule):
    d = cal.derive(metric, values, n)
    assert d.absolute == pytest.approx(absolute, rel=1e-9, abs=1e-12)
    assert d.relative == relative
    assert d.rule == rule
    assert d.spread == pytest.approx(max(values) - min(values))


def test_derive_k_and_rounding():
    assert cal.derive("acc", [0.5, 0.6], 100, k=1).absolute == pytest.approx(0.1)
    assert cal.derive("acc", [0.5, 0.6], 100, k=3).absolute == pytest.approx(0.3)
    assert cal.ceil_sig(0.0041666) == 0.00417 and cal.ceil_sig(0.9000000000000021) == 0.9 and cal.ceil_sig(0) == 0
    assert cal.ceil_sig(1 / 3) >= 1 / 3  # never rounded below the rule
    with pytest.raises(ValueError):
        cal.derive("acc", [None], 10)


def test_policy_text_is_what_check_reads(tmp_path):
    table = pd.DataFrame([
        {"task": "t1", "metric": "acc", "runs": 3, "min": 0.3, "max": 0.3, "spread": 0.0, "n": 240,
         **_d(cal.derive("acc", [0.3, 0.3], 240))},
        {"task": "t2", "metric": "acc", "runs": 3, "min": 0.3, "max": 0.4, "spread": 0.1, "n": 100,
         **_d(cal.derive("acc", [0.3, 0.4], 100))},
        {"task": "t1", "metric": "bits_per_byte", "runs": 3, "min": 2.0, "max": 2.0000001, "spread": 1e-7, "n": 250,
         **_d(cal.derive("bits_per_byte", [2.0, 2.0000001], 250))},
    ])
    path = tmp_path / "policy.yaml"
    path.write_text(cal.policy_text(table, ["made by a test"]))
    pol = load_policy(path)
    assert pol.tolerance_for("t1", "acc").absolute == 0.00417
    assert pol.tolerance_for("t2", "acc").absolute == 0.3
    assert pol.tolerance_for("new_task", "acc").absolute == 0.3  # the largest of the calibrated tasks
    bpb = pol.tolerance_for("t1", "bits_per_byte")
    assert bpb.absolute == pytest.approx(3e-7) and bpb.allowed(2.0) == pytest.approx(0.002)
    assert pol.tolerance_for("t1", "rouge1").relative == 0.01  # not calibrated: the fallback
    assert isinstance(yaml.safe_load(cal._num(3e-7)), float)
    assert path.read_text().startswith("# made by a test\n")


def _d(d):
    return {"floor": d.floor, "absolute": d.absolute, "relative": d.relative, "rule": d.rule}


def test_settings_parse_and_refuse():
    assert cal.parse_setting("batch=1,gen=1,threads=2") == {"batch": 1, "gen": 1, "threads": 2, "backend": "hf"}
    assert cal.setting_name(cal.parse_setting("threads=1")) == "batch=8,gen=32,threads=1"
    for bad in ("batch=0", "batch=x", "size=3", "threads"):
        with pytest.raises(UserError):
            cal.parse_setting(bad)


def test_with_runs_must_be_of_the_same_model_and_items(tmp_path):
    run = make_results(tmp_path / "r", "target", {"soaes_general_mc": {"acc": [1.0, 0.0]}})
    obj = yaml.safe_load(run.read_text())
    cal._check_with(obj, run, "w-target", None)
    with pytest.raises(UserError, match="another model"):
        cal._check_with(obj, run, "w-other", None)
    with pytest.raises(UserError, match="limit"):
        cal._check_with(obj, run, "w-target", 5)


def test_cli_round_trip_on_the_content_free_model(tmp_path, capsys):
    """calibrate -> policy.yaml -> check on two of its runs: exit 0, tolerances at their floors (nothing moves)."""
    out, runs = tmp_path / "policy.yaml", tmp_path / "runs"
    argv = ["calibrate", "--model", "constant:", "--tasks", "soaes_general_mc,soaes_domain_bpb", "--limit", "4",
            "--setting", "batch=8,gen=32,threads=1", "--setting", "batch=1,gen=1,threads=1",
            "--output", str(out), "--runs-dir", str(runs)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "soaes_general_mc" in printed and f"wrote {out}" in printed
    text = out.read_text()
    assert "model: constant:" in text and "generated 20" in text and "--setting batch=1,gen=1,threads=1" in text
    assert "1. batch=8,gen=32,threads=1" in text and "not varied: the seed" in text
    pol = load_policy(out)
    assert pol.tolerance_for("soaes_general_mc", "acc").absolute == 0.25  # 1/4 items: never moved
    bpb = pol.tolerance_for("soaes_domain_bpb", "bits_per_byte")
    assert bpb.absolute == 0.0 and bpb.relative == 0.001
    first, second = sorted(runs.iterdir())
    code, df = check(first, second, out)
    assert code == 0 and set(df.status) == {"same"}
    # a --with run of another model is refused before any evaluation
    other = make_results(tmp_path / "other", "x", {"soaes_general_mc": {"acc": [1.0, 0.0, 1.0, 0.0]}})
    assert cli.main(argv[:-4] + ["--model", "soaes_bench/assets/models/target", "--with", str(other), "--output",
                                 str(tmp_path / "p2.yaml")]) == 2
    assert "another model" in capsys.readouterr().err
    assert not (tmp_path / "p2.yaml").exists()
