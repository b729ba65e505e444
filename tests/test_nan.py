"""Non-finite numbers: training stops at the first non-finite loss or gradient norm (exit 1, the step named, no
model saved, the last checkpoint intact and resumable; training/loop.py), and `run` refuses a model with NaN
weights (it used to score 0.0000 with exit 0). Non-finite recipe fields (lr .inf, margin .nan) are refused before
training: test_bad_recipes.py."""

import json

import pytest

from fixtures.bad_inputs import (assert_one_error, assets, base_recipe, files_under, model_copy, pipeline_recipe,
                                 quiet_progress, rewrite_tensors, run_cli, write_yaml)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    quiet_progress(monkeypatch)


def _train_base_diverging(tmp_path, capsys, lr: float) -> str:
    r = base_recipe(output=str(tmp_path / "model"), work_dir=str(tmp_path / "work"))
    r["train"]["lr"] = lr
    code = run_cli(capsys, ["train", "base", "--recipe", write_yaml(tmp_path / "r.yaml", r)])
    line = assert_one_error(capsys, code, 1, "training diverged at step 2", "no model saved",
                            "no checkpoint was written")
    assert not (tmp_path / "model").exists()
    assert not (tmp_path / "work" / "checkpoint").exists() and not (tmp_path / "work" / "summary.json").exists()
    return line


def test_train_base_nan_loss_exits_1_and_saves_no_model(tmp_path, capsys):
    assert "loss nan" in _train_base_diverging(tmp_path, capsys, 1e30)  # weights of 1e30 after one step


def test_train_base_infinite_gradient_with_a_finite_loss_exits_1(tmp_path, capsys, monkeypatch):
    """The gradient-norm branch, made deterministic: at step 2 one gradient entry is set to inf before the norm is
    taken (an lr that overflows only the gradient does so on some CPUs and not on others: 1e4 did on an AMD EPYC,
    not on an Intel Xeon)."""
    import torch

    real, calls = torch.nn.utils.clip_grad_norm_, []

    def clip(params, max_norm, *args, **kwargs):
        params = list(params)
        calls.append(max_norm)
        if len(calls) == 2:
            next(p for p in params if p.grad is not None).grad.view(-1)[0] = float("inf")
        return real(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    line = _train_base_diverging(tmp_path, capsys, 3e-3)
    loss = float(line.split("loss ")[1].split(",")[0])
    assert 0 < loss < 20 and "gradient norm inf" in line


def test_pipeline_divergence_exits_1_before_the_phase_model(tmp_path, capsys):
    r = pipeline_recipe()
    r["cpt"]["train"]["lr"] = 1e30
    code = run_cli(capsys, ["pipeline", "--recipe", write_yaml(tmp_path / "r.yaml", r), "--output", tmp_path / "run"])
    assert_one_error(capsys, code, 1, "cpt: training diverged at step")
    assert not (tmp_path / "run" / "cpt" / "model").exists() and not (tmp_path / "run" / "cpt" / "done.json").exists()
    assert not (tmp_path / "run" / ".soaes-bench.lock").exists()


def _setup(tmp_path):
    from soaes_bench.models import load_model, load_tokenizer
    from soaes_bench.training import data
    from soaes_bench.training.loop import TrainArgs

    tok = load_tokenizer(assets() / "tok")
    blocks, _ = data.packed_corpus(assets() / "general.jsonl", tok, 16, 0, 0)
    args = TrainArgs(batch_size=2, micro_batch=2, lr=1e-3, warmup_steps=0, max_steps=5, checkpoint_every=2,
                     log_every=1)
    return load_model(assets() / "init"), data.Blocks(blocks[:40]), data.collate_blocks, args


@pytest.mark.parametrize("poison", ["loss", "gradient"])
def test_loop_stops_at_the_first_non_finite_step_and_the_last_checkpoint_resumes(poison, tmp_path):
    import torch

    from soaes_bench.training.loop import TrainingDiverged, find_checkpoint, lm_loss, train

    model, ds, collate, args = _setup(tmp_path)
    calls = {"n": 0}

    def bad_at_step_3(m, batch):
        loss, n = lm_loss(m, batch)
        calls["n"] += 1
        if calls["n"] == 3:
            if poison == "loss":
                return loss * float("nan"), n
            w = next(m.parameters())
            return loss + torch.sqrt(w - w.detach()).sum(), n  # value + 0, gradient infinite
        return loss, n

    with pytest.raises(TrainingDiverged, match=r"diverged at step 3: .* the checkpoint of step 2 .* is intact") as e:
        train(model, ds, collate, args, tmp_path / "work", loss_fn=bad_at_step_3)
    assert e.value.code == 1
    ckpt = find_checkpoint(tmp_path / "work")
    assert json.loads((ckpt / "state.json").read_text())["step"] == 2
    model, ds, collate, args = _setup(tmp_path)
    res = train(model, ds, collate, args, tmp_path / "work")  # resumes from step 2 and finishes
    assert res.steps == 5 and res.stopped_by == "done"
    assert all(bool(torch.isfinite(p).all()) for p in res.model.parameters())


def test_run_refuses_nan_weights_instead_of_scoring_zero(tmp_path, capsys):
    model = model_copy(tmp_path / "model")
    rewrite_tensors(model, lambda t: t["model.embed_tokens.weight"].fill_(float("nan")))
    before = files_under(tmp_path)
    code = run_cli(capsys, ["run", "--model", model, "--tasks", "soaes_domain_mc", "--limit", "2",
                            "--output", tmp_path / "out"])
    assert_one_error(capsys, code, 2, "model.embed_tokens.weight", "non-finite")
    assert files_under(tmp_path) == before
