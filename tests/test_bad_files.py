"""Bad input files: a GBK (not UTF-8) data, task, recipe or prompt file, a broken task YAML (lm-eval's TaskManager
would skip it silently), a key given twice in a task YAML. One line on stderr naming the file (and the line), exit
2, before any work, nothing written (soaes_bench/validate.py, config.py)."""

import json

import pytest

from fixtures.bad_inputs import assert_one_error, assets, base_recipe, files_under, pipeline_recipe, run_cli, write_yaml

GBK = "国有资产监督管理委员会".encode("gbk")  # 0xb9 0xfa ...: not UTF-8
TASK = "task: my_task\ncustom_dataset: !function utils.load\noutput_type: multiple_choice\n"


def _gbk_jsonl(path):
    path.write_bytes(b'{"id": "a", "text": "ok"}\n' + b'{"id": "b", "text": "' + GBK + b'"}\n')
    return path


def _task_folder(tmp, name, content: bytes):
    d = tmp / "tasks"
    d.mkdir(exist_ok=True)
    (d / "fine.yaml").write_text(TASK.replace("my_task", "fine_task"), encoding="utf-8")
    (d / name).write_bytes(content)
    return d


def _pipeline_with(tmp, where: str):
    r = pipeline_recipe()
    bad = _gbk_jsonl(tmp / "bad.jsonl")
    if where == "cpt.domain":
        r["cpt"]["domain"] = str(bad)
    elif where == "sft":
        r["sft"]["stages"][1]["data"] = str(bad)
    else:
        r["distill"]["data"] = [str(bad)]
    return ["pipeline", "--recipe", write_yaml(tmp / "recipe.yaml", r), "--output", tmp / "out"]


def _train_base_with_gbk_data(tmp):
    r = base_recipe(data=str(_gbk_jsonl(tmp / "bad.jsonl")), output=str(tmp / "out"), work_dir=str(tmp / "work"))
    return ["train", "base", "--recipe", write_yaml(tmp / "recipe.yaml", r)]


def _gbk_recipe(tmp):
    (tmp / "recipe.yaml").write_bytes(b"name: " + GBK + b"\n")
    return ["pipeline", "--recipe", tmp / "recipe.yaml", "--output", tmp / "out"]


def _score_gbk_pred(tmp):
    (tmp / "pred.txt").write_bytes(GBK + b"\n")
    (tmp / "ref.txt").write_text("国有资产\n", encoding="utf-8")
    return ["score", "--pred", tmp / "pred.txt", "--ref", tmp / "ref.txt"]


def _profile_gbk_prompts(tmp):
    (tmp / "prompts.txt").write_bytes(b"ok\n" + GBK + b"\n")
    return ["profile", "--target", assets() / "init", "--draft", assets() / "init", "--prompts", tmp / "prompts.txt",
            "--output", tmp / "out"]


def _check_gbk_policy(tmp):
    (tmp / "policy.yaml").write_bytes(b"# " + GBK + b"\n")
    return ["check", "--baseline", tmp / "a", "--results", tmp / "b", "--policy", tmp / "policy.yaml"]


def _include(command, name, content):
    def argv(tmp):
        d = _task_folder(tmp, name, content)
        if command == "run":
            return ["run", "--model", "constant:", "--include-path", d, "--tasks", "fine_task", "--output", tmp / "out"]
        return [command, "--include-path", d]
    return argv


# (id, argv builder, needles of the one stderr line)
CASES = [
    ("gbk-task-yaml-ls", _include("ls", "gbk.yaml", b"task: " + GBK + b"\n"), ["gbk.yaml", "not UTF-8", "line 1"]),
    ("gbk-task-yaml-run", _include("run", "gbk.yaml", b"# ok\ntask: " + GBK + b"\n"), ["gbk.yaml", "not UTF-8", "line 2"]),
    ("gbk-task-template", _include("floors", "_gbk_template_yaml", b"doc_to_text: " + GBK + b"\n"),
     ["_gbk_template_yaml", "not UTF-8"]),
    ("gbk-task-data", _include("run", "items.jsonl", b'{"q": "' + GBK + b'"}\n'), ["items.jsonl", "not UTF-8"]),
    ("broken-task-yaml", _include("ls", "broken.yaml", b"task: x\nmetric_list:\n  - metric: acc\n   aggregation: mean\n"),
     ["broken.yaml", "invalid YAML at line 4"]),
    ("broken-task-yaml-run", _include("run", "broken.yaml", b"task: [x\n"), ["broken.yaml", "invalid YAML at line 2"]),
    ("duplicate-key-task-yaml", _include("ls", "dup.yaml", b"task: a\noutput_type: multiple_choice\ntask: b\n"),
     ["dup.yaml", "line 3", "duplicate key 'task' (first given at line 1)"]),
    ("gbk-cpt-data", lambda tmp: _pipeline_with(tmp, "cpt.domain"), ["cpt.domain", "bad.jsonl", "not UTF-8", "line 2"]),
    ("gbk-sft-data", lambda tmp: _pipeline_with(tmp, "sft"), ["sft.stages[1].data", "bad.jsonl", "not UTF-8"]),
    ("gbk-distill-data", lambda tmp: _pipeline_with(tmp, "distill"), ["distill.data[0]", "not UTF-8"]),
    ("gbk-train-base-data", _train_base_with_gbk_data, ["bad.jsonl", "not UTF-8", "line 2"]),
    ("gbk-recipe", _gbk_recipe, ["recipe.yaml", "not UTF-8", "line 1"]),
    ("gbk-score-pred", _score_gbk_pred, ["pred.txt", "not UTF-8"]),
    ("gbk-profile-prompts", _profile_gbk_prompts, ["prompts.txt", "not UTF-8", "line 2"]),
    ("gbk-check-policy", _check_gbk_policy, ["policy.yaml", "not UTF-8"]),
]


@pytest.mark.parametrize("case, argv, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_file_is_one_line_exit_2_and_writes_nothing(case, argv, needles, tmp_path, capsys):
    args = argv(tmp_path)
    before = files_under(tmp_path)
    code = run_cli(capsys, args)
    assert_one_error(capsys, code, 2, *needles)
    assert files_under(tmp_path) == before and not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_the_shipped_task_folder_passes_and_function_tags_are_data(tmp_path):
    from soaes_bench import validate
    from soaes_bench.config import TaskYamlLoader, load_yaml
    from soaes_bench.paths import tasks_dir

    validate.task_folder(tasks_dir())
    (tmp_path / "t.yaml").write_text(TASK, encoding="utf-8")
    assert load_yaml(tmp_path / "t.yaml", TaskYamlLoader)["custom_dataset"] == {"!function": "utils.load"}
    # a merge key may be overridden: not a duplicate
    (tmp_path / "m.yaml").write_text("a: &x {k: 1}\nb:\n  <<: *x\n  k: 2\n", encoding="utf-8")
    assert load_yaml(tmp_path / "m.yaml")["b"] == {"k": 2}
    json.dumps(load_yaml(tmp_path / "t.yaml", TaskYamlLoader))
