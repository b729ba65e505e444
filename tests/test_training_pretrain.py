"""`soaes-bench train base` on the micro recipe with tiny data: model dir, provenance, resume, errors."""

import json
from dataclasses import replace
from pathlib import Path

from soaes_bench.cli import main
from soaes_bench.config import load_dataclass
from soaes_bench.training.pretrain import BaseRecipe, train_base
from soaes_bench.training.fixtures import tiny_corpus, tiny_tokenizer
from soaes_bench.models import load_model, load_tokenizer

REPO = Path(__file__).resolve().parents[1]



def test_micro_base_trains_saves_and_resumes(tmp_path):
    tiny_tokenizer(tmp_path / "tok")
    tiny_corpus(tmp_path / "general.jsonl", 80, seed=1)
    r = load_dataclass(BaseRecipe, REPO / "training/recipes/micro.yaml")
    r = replace(r, data=str(tmp_path / "general.jsonl"), tokenizer=str(tmp_path / "tok"),
                output=str(tmp_path / "model"), work_dir=str(tmp_path / "work"))
    s = train_base(r)
    assert s["steps"] == r.train.max_steps and s["stopped_by"] == "done"
    assert s["val_loss"] is not None and s["last_train_loss"] < 5.0  # ln(400) = 6.0 at random init
    meta = json.loads((tmp_path / "model" / "soaes_training.json").read_text())
    assert meta["steps"] == s["steps"] and len(meta["data_sha256"]) == 64
    m = load_model(tmp_path / "model")
    assert m.config.num_hidden_layers == 2 and m.config.hidden_size == 64
    assert m.config.vocab_size == len(load_tokenizer(tmp_path / "model"))
    log = (tmp_path / "work" / "train_log.jsonl").read_text().splitlines()
    again = train_base(r)  # finished checkpoint -> no new steps, same model, same provenance
    assert again["steps"] == s["steps"]
    assert again["val_loss"] == s["val_loss"] and again["last_train_loss"] == s["last_train_loss"]
    assert (tmp_path / "work" / "train_log.jsonl").read_text().splitlines() == log


def test_cli_reports_missing_data_as_exit_2(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text((REPO / "training/recipes/micro.yaml").read_text().replace(
        "data: training/data/general.jsonl", f"data: {tmp_path / 'nope.jsonl'}"))
    assert main(["train", "base", "--recipe", str(recipe)]) == 2
    assert "nope.jsonl not found" in capsys.readouterr().err
