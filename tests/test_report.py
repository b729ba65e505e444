"""report(): one Markdown page per run directory with results, gates, ablations, profile and linked figures."""

import re

import pytest
from fixtures.reporting_runs import make_gate, make_profile, make_results

from soaes_bench import cli
from soaes_bench.errors import UserError
from soaes_bench.io import write_json
from soaes_bench.reporting.report import report


def test_report_of_a_run_directory(tmp_path):
    run = tmp_path / "runs" / "soaes"
    for k, phase in enumerate(("cpt", "base")):  # written out of order: the report sorts by phase
        make_results(run / phase, phase, {"soaes_general_mc": {"acc": [1.0, 0.0, 1.0, float(k == 0)]},
                                          "soaes_domain_qa": {"rouge1": [10.0 + 5 * (1 - k), 20.0]}})
    make_gate(run / "cpt" / "gate.json", phase="cpt", results="results.json", passed=False)
    make_profile(run / "profile" / "profile.json")
    write_json(run / "ablation_sft.json", {"rows": [{"variant": "single-stage", "rouge1": 20.1},
                                                    {"variant": "progressive", "rouge1": 23.4}]})
    path = report(run)
    assert path == run / "report.md"
    text = path.read_text()
    for heading in ("## Results", "## Gates", "### cpt: FAILED", "## Ablations", "## Speculative decoding profile",
                    "## Figures"):
        assert heading in text
    assert "| task | metric | base | cpt |" in text  # phase order
    assert "| soaes_general_mc | acc | 0.500 ± " in text and "0.750 ± " in text
    assert "**FAIL**" in text and "<= 1.900" in text and "[1.700, 1.740]" in text
    assert "| progressive | 23.40 |" in text
    assert "### Speculative-decoding profile" in text and "**Best γ = 3** (all)" in text  # the profiler's tables
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all((run / link).is_file() for link in links)
    assert {"figures/phases.png", "figures/profile.png"} <= set(links)


def test_report_output_elsewhere_links_relatively(tmp_path):
    run = tmp_path / "run"
    make_results(run, "m", {"soaes_general_mc": {"acc": [1.0, 0.0]}})
    out = tmp_path / "docs" / "r.md"
    assert cli.main(["report", str(run), "--output", str(out)]) == 0
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", out.read_text())
    assert links == ["../run/figures/models.png"] and (out.parent / links[0]).is_file()


def test_report_of_empty_or_missing_directory(tmp_path):
    with pytest.raises(UserError, match="nothing to report"):
        report(tmp_path)
    assert cli.main(["report", str(tmp_path / "missing")]) == 2
