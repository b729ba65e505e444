"""Broken model directories: `run`, `profile` and `pipeline` refuse them before any work (soaes_bench/validate.py
model_dir: config/safetensors agreement from the headers, complete files, finite weights), one line, exit 2,
nothing written. Before this check a NaN model scored 0.0000 with exit 0, and a config with one layer more than its
weights was evaluated with a randomly initialised layer."""

import json

import pytest
import torch

from fixtures.bad_inputs import (assert_one_error, assets, edit_config, files_under, model_copy, pipeline_recipe,
                                 rewrite_tensors, run_cli, write_yaml)


def _nan(t):
    t["model.norm.weight"][3] = float("nan")


def _inf(t):
    t["model.layers.1.mlp.up_proj.weight"][0, 0] = float("inf")


def _drop(t):
    del t["model.layers.0.input_layernorm.weight"]


def _extra(t):
    t["model.extra.weight"] = torch.zeros(2, 2, dtype=torch.bfloat16)


def _truncate(d):
    p = d / "model.safetensors"
    p.write_bytes(p.read_bytes()[:-1000])


def _garbage_header(d):
    p = d / "model.safetensors"
    p.write_bytes(b"\xff" * 8 + p.read_bytes()[8:])


# (id, corruption of a copy of the tiny model dir, needles of the one stderr line)
CASES = [
    ("nan-weights", lambda d: rewrite_tensors(d, _nan), ["model.safetensors", "model.norm.weight", "non-finite"]),
    ("inf-weights", lambda d: rewrite_tensors(d, _inf), ["model.layers.1.mlp.up_proj.weight", "non-finite"]),
    ("config-one-layer-more", lambda d: edit_config(d, num_hidden_layers=3),
     ["num_hidden_layers 3", "no tensors for layer(s) 2 (missing tensors)"]),
    ("config-one-layer-less", lambda d: edit_config(d, num_hidden_layers=1), ["unexpected tensors"]),
    ("missing-tensor", lambda d: rewrite_tensors(d, _drop), ["lack 1 tensor", "model.layers.0.input_layernorm.weight"]),
    ("unexpected-tensor", lambda d: rewrite_tensors(d, _extra), ["model.extra.weight", "does not know"]),
    ("shape-disagrees", lambda d: edit_config(d, intermediate_size=96), ["has shape [64, 128]", "implies [64, 96]"]),
    ("truncated-safetensors", _truncate, ["model.safetensors", "truncated safetensors file"]),
    ("garbage-header", _garbage_header, ["model.safetensors", "truncated safetensors file"]),
    ("config-not-json", lambda d: (d / "config.json").write_text("{oops", encoding="utf-8"),
     ["config.json", "invalid JSON"]),
    ("no-weights", lambda d: (d / "model.safetensors").unlink(), ["no *.safetensors weights"]),
]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    p = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    p.write_text("国有资产监督管理\n企业改革\n", encoding="utf-8")
    return p


def _argv(command: str, model, tmp_path, prompts):
    if command == "run":
        return ["run", "--model", model, "--tasks", "soaes_domain_mc", "--limit", "2", "--output", tmp_path / "out"]
    if command == "profile-draft":
        return ["profile", "--target", assets() / "init", "--draft", model, "--prompts", prompts, "--gamma", "1",
                "--contexts", "", "--repeats", "1", "--num-prompts", "1", "--max-new-tokens", "4",
                "--output", tmp_path / "out"]
    if command == "profile-target":
        return ["profile", "--target", model, "--draft", assets() / "init", "--prompts", prompts, "--gamma", "1",
                "--contexts", "", "--repeats", "1", "--output", tmp_path / "out"]
    r = pipeline_recipe()
    r["init"] = str(model)
    return ["pipeline", "--recipe", write_yaml(tmp_path / "recipe.yaml", r), "--output", tmp_path / "out"]


@pytest.mark.parametrize("case, corrupt, needles", CASES, ids=[c[0] for c in CASES])
def test_run_refuses_a_broken_model(case, corrupt, needles, tmp_path, capsys, prompts):
    model = model_copy(tmp_path / "model")
    corrupt(model)
    before = files_under(tmp_path)
    code = run_cli(capsys, _argv("run", model, tmp_path, prompts))
    assert_one_error(capsys, code, 2, str(model), *needles)
    assert files_under(tmp_path) == before and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, case", [("profile-draft", "nan-weights"), ("profile-target", "config-one-layer-more"),
                                           ("profile-draft", "truncated-safetensors"), ("pipeline", "nan-weights"),
                                           ("pipeline", "config-one-layer-more")])
def test_profile_and_pipeline_refuse_a_broken_model(command, case, tmp_path, capsys, prompts):
    corrupt, needles = next((c[1], c[2]) for c in CASES if c[0] == case)
    model = model_copy(tmp_path / "model")
    corrupt(model)
    argv = _argv(command, model, tmp_path, prompts)
    before = files_under(tmp_path)
    code = run_cli(capsys, argv)
    line = assert_one_error(capsys, code, 2, str(model), *needles)
    assert ("--draft" in line) == (command == "profile-draft")
    assert files_under(tmp_path) == before and not (tmp_path / "out").exists()


def test_a_sound_model_passes_the_checks(tmp_path):
    from soaes_bench import validate
    from soaes_bench.paths import MODELS_DIR

    for d in [assets() / "init", *sorted(p for p in MODELS_DIR.iterdir() if (p / "config.json").is_file())]:
        assert validate.model_dir(d, require_tokenizer=True)
    # a sharded model: the index must not name a missing shard
    model = model_copy(tmp_path / "sharded")
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "model-00002.safetensors"}}))
    with pytest.raises(Exception, match="names shard model-00002.safetensors, which is missing"):
        validate.model_dir(model)
