"""Bad recipes for `train base` and `pipeline`: one line on stderr naming the recipe and field, exit 2, before any
training, nothing written (soaes_bench/validate.py, config.py, pipeline_recipe.preflight)."""

import pytest

from fixtures.bad_inputs import assert_one_error, base_recipe, files_under, pipeline_recipe, run_cli, write_yaml
from soaes_bench.paths import PACKAGE_DIR

IN_PACKAGE = PACKAGE_DIR / "assets" / "models" / "must-not-exist"


def _gate(**kw) -> dict:
    return {"name": "g", "task": "soaes_domain_mc", "metric": "acc", "op": ">=", "reference": "base", **kw}


def _evaluated(r: dict) -> dict:
    r["evaluation"] = {}  # the whole suite: gates may name any lm-eval task
    return r


def _set(path: str, value):
    def change(r):
        *keys, last = path.split(".")
        node = r
        for k in keys:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[last] = value
        return r
    return change


def _add_gate(phase: str, gate: dict):
    def change(r):
        r[phase].setdefault("gates", []).append(gate)
        return _evaluated(r)
    return change


# (id, command, recipe change or raw text, extra argv, needles in the one stderr line)
CASES = [
    ("base-empty-recipe", "base", "", [], ["output: required key is missing"]),
    ("base-lr-inf", "base", _set("train.lr", float("inf")), [], ["train.lr: must be a finite number, got inf"]),
    ("base-lr-nan", "base", _set("train.lr", float("nan")), [], ["train.lr: must be a finite number, got nan"]),
    ("base-output-in-package", "base", _set("output", str(IN_PACKAGE)), [], ["inside the installed package"]),
    ("base-work-dir-in-package", "base", _set("work_dir", str(IN_PACKAGE)), [], ["work_dir:", "inside the installed package"]),
    ("base-output-under-a-file", "base", _set("output", "{tmp}/a_file/model"), [], ["a_file is a file, not a directory"]),
    ("base-cli-output-in-package", "base", None, ["--output", str(IN_PACKAGE)], ["--output", "inside the installed package"]),
    ("base-missing-tokenizer", "base", _set("tokenizer", "{tmp}/no_tok"), [], ["tokenizer:", "no tokenizer files"]),
    ("base-duplicate-key", "base", "name: a\nname: b\noutput: x\n", [], ["duplicate key 'name'", "line 2"]),
    ("pipeline-missing-cpt-focus", "pipeline", lambda r: _set("cpt.focus_fraction", 0.3)(_set("cpt.focus", "{tmp}/no_core.jsonl")(r)), [],
     ["cpt.focus", "no_core.jsonl"]),
    ("pipeline-focus-and-replay-over-1", "pipeline", lambda r: _set("cpt.focus_fraction", 0.9)(_set("cpt.focus", "x.jsonl")(r)),
     [], ["cpt", "replay_fraction + focus_fraction must be <= 1"]),
    ("pipeline-focus-fraction-without-focus", "pipeline", _set("cpt.focus_fraction", 0.3), [],
     ["cpt", "focus_fraction 0.3 needs a focus file"]),
    ("pipeline-missing-sft-general", "pipeline", lambda r: _set("sft.replay_fraction", 0.2)(_set("sft.general", "{tmp}/no_gen.jsonl")(r)), [],
     ["sft.general", "no_gen.jsonl"]),
    ("pipeline-sft-replay-without-general", "pipeline", lambda r: _set("sft.replay_fraction", 0.2)(_set("sft.general", None)(r)), [],
     ["sft", "replay_fraction 0.2 needs a general file"]),
    ("pipeline-sft-replay-all", "pipeline", lambda r: _set("sft.replay_fraction", 1.0)(_set("sft.general", "x.jsonl")(r)), [],
     ["sft", "replay_fraction must be < 1"]),
    ("pipeline-gate-task-typo", "pipeline", _add_gate("sft", _gate(task="soaes_domain_mcc")), [],
     ["sft.gates: check 'g'", "unknown task 'soaes_domain_mcc' (did you mean soaes_domain_mc?)"]),
    ("pipeline-gate-metric-typo", "pipeline", _add_gate("sft", _gate(metric="acc_nrom")), [],
     ["sft.gates: check 'g'", "no metric 'acc_nrom' (did you mean acc_norm?)"]),
    ("pipeline-internal-metric-typo", "pipeline", _add_gate("cpt", _gate(task="cpt_val", metric="val_loss_domian",
                                                                          reference="base_val")), [],
     ["task 'cpt_val' has no metric 'val_loss_domian' (did you mean val_loss_domain?)"]),
    ("pipeline-eval-task-typo", "pipeline", lambda r: {**r, "evaluation": {"plain_tasks": ["soaes_general_mcq"]}}, [],
     ["evaluation.plain_tasks", "unknown task 'soaes_general_mcq'"]),
    ("pipeline-missing-sft-data", "pipeline", _set("sft.stages.1.data", "{tmp}/missing_sft.jsonl"), [],
     ["sft.stages[1].data", "missing_sft.jsonl: file not found"]),
    ("pipeline-missing-distill-data", "pipeline", _set("distill.data", ["{tmp}/nope.jsonl"]), [],
     ["distill.data[0]", "nope.jsonl: file not found"]),
    ("pipeline-nan-margin", "pipeline", _add_gate("cpt", _gate(margin=float("nan"))), [],
     ["cpt.gates[1]: gate 'g': margin must be a finite number, got nan"]),
    ("pipeline-inf-threshold", "pipeline",
     _add_gate("cpt", {"name": "t", "task": "cpt_val", "metric": "val_loss_domain", "op": "<=", "threshold": float("inf")}),
     [], ["threshold must be a finite number"]),
    ("pipeline-lr-inf", "pipeline", _set("sft.stages.0.train.lr", float("inf")), [],
     ["sft.stages[0].train.lr: must be a finite number, got inf"]),
    ("pipeline-missing-init", "pipeline", _set("init", "{tmp}/no_model"), [], ["init:", "model directory not found"]),
    ("pipeline-output-in-package", "pipeline", None, ["--output", str(IN_PACKAGE)], ["inside the installed package"]),
    ("pipeline-recipe-output-in-package", "pipeline", _set("output", str(IN_PACKAGE)), [],
     ["output:", "inside the installed package"]),
    ("pipeline-output-under-a-file", "pipeline", None, ["--output", "{tmp}/a_file/run"], ["is a file, not a directory"]),
    ("pipeline-duplicate-key", "pipeline", "name: a\ncpt: {}\ncpt: {}\n", [], ["duplicate key 'cpt'", "line 3"]),
]


@pytest.mark.parametrize("case, command, change, argv, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_recipe_is_one_line_exit_2_and_writes_nothing(case, command, change, argv, needles, tmp_path, capsys):
    (tmp_path / "a_file").write_text("", encoding="utf-8")

    def fill(v):  # "{tmp}" -> this test's folder, anywhere in the recipe
        if isinstance(v, str):
            return v.format(tmp=tmp_path)
        if isinstance(v, list):
            return [fill(x) for x in v]
        return {k: fill(x) for k, x in v.items()} if isinstance(v, dict) else v

    recipe = tmp_path / "recipe.yaml"
    if isinstance(change, str):
        recipe.write_text(change, encoding="utf-8")
    else:
        r = base_recipe(output=str(tmp_path / "model"), work_dir=str(tmp_path / "work")) if command == "base" \
            else pipeline_recipe()
        r = change(r) if change else r
        write_yaml(recipe, fill(r))
    before = files_under(tmp_path)
    args = (["train", "base"] if command == "base" else
            ["pipeline"] if "recipe-output" in case else ["pipeline", "--output", tmp_path / "run"])
    code = run_cli(capsys, [*args, "--recipe", recipe, *fill(argv)])
    assert_one_error(capsys, code, 2, str(recipe) if not argv else "", *needles)
    assert files_under(tmp_path) == before  # nothing written: no run dir, no work dir, no model
    assert not IN_PACKAGE.exists()


def test_shipped_recipes_name_their_output_outside_the_package():
    from soaes_bench.config import load_yaml
    from soaes_bench.paths import training_dir
    from soaes_bench.validate import inside_package

    for path in sorted((training_dir() / "recipes").glob("*.yaml")):
        out = load_yaml(path).get("output")
        assert out, f"{path.name}: names no output"
        assert not inside_package(out), f"{path.name}: output {out} is inside the package"
