"""Bad command-line options: finite and in range (seeds in numpy's [0, 2**32 - 1], counts >= 1, temperature finite
and >= 0), output paths usable and outside the package. Checked by cli.main before the command starts
(soaes_bench/validate.py options): one line on stderr naming the option, exit 2, nothing written."""

import pytest

from fixtures.bad_inputs import assert_one_error, files_under, run_cli
from soaes_bench.paths import PACKAGE_DIR

IN_PACKAGE = PACKAGE_DIR / "must-not-exist"
RUN = ["run", "--model", "constant:", "--tasks", "soaes_domain_mc", "--output", "{tmp}/out"]
PROFILE = ["profile", "--output", "{tmp}/out"]
GATE = ["gate", "--recipe", "{tmp}/r.yaml", "--phase", "cpt", "--results", "{tmp}/x"]

# (id, argv, needles of the one stderr line)
CASES = [
    ("seed-negative", [*RUN, "--seed", "-1"], ["--seed: must be an integer in [0, 4294967295]", "got -1"]),
    ("seed-too-big", [*RUN, "--seed", str(2**32)], ["--seed", "got 4294967296"]),
    ("seed-data-build", ["data", "build", "--seed", "-5"], ["--seed", "got -5"]),
    ("seed-profile", [*PROFILE, "--seed", str(10**12)], ["--seed", "got 1000000000000"]),
    ("seed-compare", ["compare", "a", "b", "--seed", "-3"], ["--seed", "got -3"]),
    ("threads-zero", [*PROFILE, "--threads", "0"], ["--threads: must be >= 1, got 0"]),
    ("threads-negative", [*PROFILE, "--threads", "-2"], ["--threads: must be >= 1, got -2"]),
    ("temperature-inf", [*PROFILE, "--temperature", "inf"], ["--temperature: must be a finite number, got inf"]),
    ("temperature-nan", [*PROFILE, "--temperature", "nan"], ["--temperature: must be a finite number, got nan"]),
    ("temperature-negative", [*PROFILE, "--temperature", "-0.5"], ["--temperature: must be >= 0, got -0.5"]),
    ("max-new-tokens-zero", [*PROFILE, "--max-new-tokens", "0"], ["--max-new-tokens: must be >= 1, got 0"]),
    ("repeats-zero", [*PROFILE, "--repeats", "0"], ["--repeats: must be >= 1, got 0"]),
    ("num-prompts-zero", [*PROFILE, "--num-prompts", "0"], ["--num-prompts: must be >= 1, got 0"]),
    ("gamma-zero", [*PROFILE, "--gamma", "0,2"], ["--gamma: need one or more values >= 1, got [0, 2]"]),
    ("gamma-empty", [*PROFILE, "--gamma", ""], ["--gamma: need one or more values >= 1, got []"]),
    ("contexts-negative", [*PROFILE, "--contexts", "-4"], ["--contexts", "got [-4]"]),
    ("limit-zero", [*RUN, "--limit", "0"], ["--limit: must be a positive integer, got 0"]),
    ("batch-size-zero", [*RUN, "--batch-size", "0"], ["--batch-size: must be a positive integer, got 0"]),
    ("gen-batch-size-negative", [*RUN, "--gen-batch-size", "-1"], ["--gen-batch-size", "got -1"]),
    ("resamples-zero-compare", ["compare", "a", "b", "--resamples", "0"], ["--resamples: must be >= 1, got 0"]),
    ("resamples-zero-gate", [*GATE, "--resamples", "0"], ["--resamples: must be >= 1, got 0"]),
    ("max-leak-nan", ["data", "check", "--max-leak", "nan"], ["--max-leak: must be a finite number, got nan"]),
    ("max-leak-above-1", ["data", "check", "--max-leak", "1.5"], ["--max-leak: must be in [0, 1], got 1.5"]),
    ("malformed-int", [*RUN, "--limit", "ten"], ["argument --limit: invalid int value: 'ten'"]),
    ("malformed-float", [*PROFILE, "--temperature", "hot"], ["argument --temperature: invalid float value"]),
    ("unknown-choice", [*RUN, "--device", "tpu"], ["argument --device: invalid choice: 'tpu'"]),
    ("run-output-in-package", [*RUN, "--output", str(IN_PACKAGE)], ["--output", "inside the installed package"]),
    ("profile-output-in-package", [*PROFILE, "--output", str(IN_PACKAGE)], ["inside the installed package"]),
    ("pipeline-output-in-package", ["pipeline", "--recipe", "{tmp}/r.yaml", "--output", str(IN_PACKAGE)],
     ["inside the installed package"]),
    ("gate-output-in-package", [*GATE, "--output", str(IN_PACKAGE)], ["inside the installed package"]),
    ("compare-output-in-package", ["compare", "a", "b", "--output", str(IN_PACKAGE / "t.csv")],
     ["inside the installed package"]),
    ("plot-output-in-package", ["plot", "x", "--output", str(IN_PACKAGE)], ["inside the installed package"]),
    ("report-output-in-package", ["report", "x", "--output", str(IN_PACKAGE / "r.md")], ["inside the installed package"]),
    ("train-output-in-package", ["train", "base", "--output", str(IN_PACKAGE)], ["inside the installed package"]),
    ("run-output-under-a-file", [*RUN, "--output", "{tmp}/a_file/out"], ["a_file is a file, not a directory"]),
    ("profile-output-is-a-file", [*PROFILE, "--output", "{tmp}/a_file"], ["exists and is not a directory"]),
    ("pipeline-output-under-a-file", ["pipeline", "--recipe", "{tmp}/r.yaml", "--output", "{tmp}/a_file/x"],
     ["is a file, not a directory"]),
    ("compare-output-is-a-dir", ["compare", "a", "b", "--output", "{tmp}"], ["is a directory, expected a file name"]),
]


@pytest.mark.parametrize("case, argv, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_option_is_one_line_exit_2_and_writes_nothing(case, argv, needles, tmp_path, capsys):
    (tmp_path / "a_file").write_text("", encoding="utf-8")
    before = files_under(tmp_path)
    code = run_cli(capsys, [a.format(tmp=tmp_path) for a in argv])
    line = assert_one_error(capsys, code, 2, *needles)
    assert line.startswith("soaes-bench ")
    assert files_under(tmp_path) == before and not (tmp_path / "out").exists()
    assert not IN_PACKAGE.exists()


def test_help_still_exits_0(capsys):
    assert run_cli(capsys, ["run", "--help"]) == 0
    assert "usage: soaes-bench run" in capsys.readouterr().out
