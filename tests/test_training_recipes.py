"""Every shipped recipe loads against its dataclass and starts with the command that runs it (litgpt config hub)."""

from pathlib import Path

import pytest

from soaes_bench.config import load_dataclass, load_yaml
from soaes_bench.errors import UserError
from soaes_bench.training.pretrain import BaseRecipe
from soaes_bench.pipeline_recipe import PHASES, PipelineRecipe, validate

RECIPES = sorted((Path(__file__).resolve().parents[1] / "training" / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    names = {p.name for p in RECIPES}
    assert {"base.yaml", "micro.yaml", "reference.yaml", "micro_pipeline.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_loads_and_documents_its_command(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# "), "first line must be a comment"
    header = [line for line in text.splitlines() if line.startswith("#")]
    is_pipeline = any(k in (load_yaml(path) or {}) for k in PHASES)
    cmd = "soaes-bench pipeline --recipe" if is_pipeline else "soaes-bench train base --recipe"
    assert any(cmd in line and path.name in line for line in header), f"header must give `{cmd} .../{path.name}`"
    if is_pipeline:
        validate(load_dataclass(PipelineRecipe, path), str(path))
    else:
        load_dataclass(BaseRecipe, path)


def test_typos_and_bad_values_are_reported_with_the_key(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("name: x\ntrain: {lerning_rate: 1, max_steps: 2}\n")
    with pytest.raises(UserError, match=r"train.lerning_rate: unknown key"):
        load_dataclass(BaseRecipe, bad)
    bad.write_text("name: x\nmodel: giant\ntrain: {max_steps: 2}\n")
    with pytest.raises(UserError, match=r"model: unknown model size"):
        load_dataclass(BaseRecipe, bad)
    bad.write_text("name: x\ntrain: {max_steps: 2, max_tokens: 5}\n")
    with pytest.raises(UserError, match="exactly one of max_steps and max_tokens"):
        load_dataclass(BaseRecipe, bad)
    bad.write_text("name: p\ncpt:\n  gates: [{name: g, task: t, metric: m, op: '>=', reference: nowhere}]\n")
    with pytest.raises(UserError, match="unknown reference 'nowhere'"):
        validate(load_dataclass(PipelineRecipe, bad), str(bad))
