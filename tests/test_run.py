"""`soaes-bench run` / `ls` and the evaluate() API, on a tiny Qwen2 model and the small fixture task data."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from soaes_bench import cli
from soaes_bench.evaluation import chat, suites
from soaes_bench.evaluation import run as run_mod
from soaes_bench.paths import TOKENIZER_DIR, tasks_dir

FIXTURES = Path(__file__).parent / "fixtures" / "tasks_data"
SUITES = ("soaes_general", "soaes_domain")
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")



def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def _tokenizer(tmp: Path):
    """The shared tokenizer once `data build` has made it; until then a tiny byte-level BPE with the same specials."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (TOKENIZER_DIR / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = [str(v) for f in FIXTURES.rglob("*.jsonl") for r in _rows(f) for v in r.values()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    hf.chat_template = CHATML
    return hf


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """2 layers x 64 hidden Qwen2, briefly fitted to the fixture answers so generations are not empty noise."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = tmp_path_factory.mktemp("tiny_model")
    tok = _tokenizer(out)
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = Qwen2ForCausalLM(cfg)
    texts = [f"问题：{r['question']}\n答案：{r['answer']}<|endoftext|>"
             for s in SUITES for f in (FIXTURES / s).glob("*.jsonl") for r in _rows(f) if "answer" in r
             and isinstance(r["answer"], str)]
    enc = tok(texts, padding=True, return_tensors="pt")
    labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(25):
        model(**enc, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.generation_config.eos_token_id = [tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")]
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def on_fixture_tasks(monkeypatch, fixture_tasks):
    monkeypatch.setattr(suites, "tasks_dir", lambda: fixture_tasks)
    return fixture_tasks


@pytest.fixture(scope="module")
def full_run(model_dir, fixture_tasks, tmp_path_factory):
    """One `soaes-bench run --suite all --chat-template off` on the fixture tasks, shared by the checks below."""
    out = tmp_path_factory.mktemp("runs") / "latest"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(suites, "tasks_dir", lambda: fixture_tasks)
        code = cli.main(["run", "--model", str(model_dir), "--suite", "all", "--output", str(out),
                         "--chat-template", "off", "--batch-size", "4"])
    assert code == 0
    return out, json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_run_writes_the_three_outputs_with_schema_fields(full_run, model_dir, fixture_tasks):
    from soaes_bench import results as results_mod

    out, res = full_run
    assert results_mod.validate(res, out / "results.json") == "eval"
    assert (res["schema"], res["schema_version"], res["kind"]) == ("soaes-bench/results", 1, "eval")
    assert res["run"] == "latest" and res["suite"] == "all" and res["seed"] == 1234 and res["limit"] is None
    m = res["model"]
    weights = hashlib.sha256()
    weights.update(b"model.safetensors")
    weights.update(hashlib.sha256((model_dir / "model.safetensors").read_bytes()).digest())
    assert m["weights_sha256"] == weights.hexdigest()
    tok = hashlib.sha256()  # every tokenizer file the dir holds (records/provenance.py), chat template included
    for f in sorted(f for f in model_dir.iterdir() if f.name.startswith(("tokenizer", "special_tokens", "chat_template"))):
        tok.update(f.name.encode())
        tok.update(hashlib.sha256(f.read_bytes()).digest())
    assert m["tokenizer_sha256"] == tok.hexdigest()
    assert m["name"] == model_dir.name and m["n_params"] > 0
    assert set(res["env"]) == {"soaes_bench", "lm_eval", "torch", "transformers", "python", "device", "device_name",
                               "threads", "chat_template"}
    assert res["env"]["chat_template"] is False and res["env"]["lm_eval"] == "0.4.13"
    assert set(res["groups"]) == set(SUITES)
    index = suites.task_manager().task_index  # (suites.tasks_dir is not patched here: the shipped YAML, same tasks)
    for name, t in res["tasks"].items():
        mc = t["output_type"] == "multiple_choice"  # MC tasks also record where their predictions fall
        assert set(t) - {"floors"} == {"group", "version", "config_sha256", "n", "output_type", "higher_is_better",
                                       "metrics", "samples"} | ({"positions"} if mc else set())
        assert t["version"] == index[name].cfg["metadata"]["version"]  # as the task YAML says
        assert len(t["config_sha256"]) == 64 and t["group"] in SUITES
        data = fixture_tasks / t["group"] / "data"
        ids = [r["id"] for f in data.glob("*.jsonl") for r in _rows(f)]
        rows = _rows(out / t["samples"])
        assert t["n"] == len(rows) > 0
        assert [r["doc_id"] for r in rows] == list(range(len(rows)))
        assert len({r["id"] for r in rows}) == len(rows)
        assert all(r.get("item", r["id"]) in ids for r in rows)  # circular rows: `<id>@r<k>` of item `id`
        if mc:
            assert t["positions"]["n"] == len(rows) and sum(t["positions"]["shares"].values()) == pytest.approx(1)
        assert all({"id", "doc_id", "metrics", "target", "prediction"} <= set(r) for r in rows)
    for g, members in {g: len(index[g].cfg["task"]) for g in SUITES}.items():  # every task of the group files
        tasks = [t for t in res["tasks"].values() if t["group"] == g]
        assert len(tasks) == members and res["groups"][g]["n"] == sum(t["n"] for t in tasks)
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "| soaes_domain_qa |" in md and "bleu4 ↑" in md and "bits_per_byte ↓" in md


def test_sample_ids_follow_data_order(full_run, fixture_tasks):
    out, res = full_run
    data = _rows(fixture_tasks / "soaes_domain" / "data" / "domain_qa.jsonl")
    rows = _rows(out / res["tasks"]["soaes_domain_qa"]["samples"])
    assert [r["id"] for r in rows] == [d["id"] for d in data]
    assert [r["target"] for r in rows] == [d["answer"] for d in data]


def test_task_metrics_can_be_recomputed_from_samples(full_run):
    from soaes_bench.metrics.chinese import bleu4

    out, res = full_run
    for name, t in res["tasks"].items():
        rows = _rows(out / t["samples"])
        value = lambda k: t["metrics"][k]["value"]  # noqa: E731
        if t["output_type"] == "generate_until":
            preds, refs = zip(*(r["bleu_pair"] for r in rows))
            assert value("bleu4") == pytest.approx(bleu4(list(preds), list(refs)))
            assert value("rouge1") == pytest.approx(sum(r["metrics"]["rouge1"] for r in rows) / len(rows))
            assert all(r["prediction"] == r["bleu_pair"][0] and r["target"] == r["bleu_pair"][1] for r in rows)
        elif t["output_type"] == "multiple_choice":
            acc = next(m for m in ("acc", "cloze_acc", "rotation_acc") if m in t["metrics"])  # letter, cloze, circular
            assert value(acc) == pytest.approx(sum(r["metrics"][acc] for r in rows) / len(rows))
            assert all((r["prediction"] == r["target"]) == (r["metrics"][acc] == 1.0) for r in rows)
            assert all((r["pred_index"] == r["target_index"]) == (r["metrics"][acc] == 1.0) for r in rows)
            if "circular_acc" in t["metrics"]:  # an item counts when all its rotations are right
                items: dict = {}
                for r in rows:
                    items[r["item"]] = min(items.get(r["item"], 1.0), r["metrics"]["circular_acc"])
                assert value("circular_acc") == pytest.approx(sum(items.values()) / len(items))
                assert value("circular_acc") <= value("rotation_acc")
        else:
            ll = sum(r["loglikelihood"] for r in rows)
            assert value("bits_per_byte") == pytest.approx(-ll / sum(r["n_bytes"] for r in rows) / math.log(2))
            assert value("word_perplexity") == pytest.approx(math.exp(-ll / sum(r["n_words"] for r in rows)))
    assert any(r["prediction"] for r in _rows(out / "samples" / "soaes_domain_qa.jsonl"))


def test_run_prints_the_table(model_dir, on_fixture_tasks, tmp_path, capsys):
    assert cli.main(["run", "--model", str(model_dir), "--tasks", "soaes_domain_mc", "--limit", "2",
                     "--output", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "| soaes_domain_mc | 2 | acc ↑ |" in out and "### Predicted positions" in out
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    # one stderr line per task whose predictions sit mostly at one position (position_warnings decides)
    warned = [line for line in captured.err.splitlines() if line.startswith("soaes-bench run: warning:")]
    assert warned == run_mod.position_warnings(res)
    assert res["suite"] == "custom" and res["limit"] == 2 and res["groups"] == {}
    assert res["env"]["chat_template"] is True  # the tokenizer has one and the default is auto


@pytest.mark.parametrize("argv, message", [
    (["--suite", "domian"], "unknown suite 'domian' (did you mean domain?)"),
    (["--tasks", "soaes_domain_q"], "unknown task 'soaes_domain_q' (did you mean soaes_domain_qa?)"),
    (["--model", "{tmp}/nope"], "model directory not found"),
    (["--model", "{tmp}/bin_only"], "only pickle (pytorch_model.bin)"),
    (["--model", "{tmp}/no_config"], "no config.json"),
    (["--output", "{tmp}/a_file"], "exists and is not a directory"),
    (["--limit", "0"], "--limit: must be a positive integer"),
    (["--gen-batch-size", "0"], "--gen-batch-size: must be a positive integer"),
])
def test_user_errors_exit_2_with_one_line(argv, message, model_dir, tmp_path, capsys):
    (tmp_path / "bin_only").mkdir()
    (tmp_path / "bin_only" / "config.json").write_text("{}")
    (tmp_path / "bin_only" / "pytorch_model.bin").write_bytes(b"\x80\x02")
    (tmp_path / "no_config").mkdir()
    (tmp_path / "a_file").write_text("")
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--model" not in argv:
        argv += ["--model", str(model_dir)]
    if "--output" not in argv:
        argv += ["--output", str(tmp_path / "out")]
    assert cli.main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("soaes-bench run: error: ") and message in err


def test_evaluate_api_writes_nothing_and_batching_does_not_change_generations(model_dir, on_fixture_tasks,
                                                                              tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_eval.models.huggingface import HFLM

    seen = []  # the batch size each generate_until call ran with
    original = HFLM.generate_until
    monkeypatch.setattr(HFLM, "generate_until", lambda self, *a, **k: seen.append(self.batch_size) or original(self, *a, **k))
    monkeypatch.chdir(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    kw = dict(tasks="soaes_general_gen,soaes_domain_qa", chat_template="off")
    one = run_mod.evaluate(model, tok, batch_size=2, gen_batch_size=1, **kw)
    four = run_mod.evaluate(model, tok, batch_size=2, gen_batch_size=4, **kw)  # left padding, 3-4 prompts a batch
    assert seen == [1, 4]
    assert list(tmp_path.iterdir()) == []
    for name in ("soaes_general_gen", "soaes_domain_qa"):
        assert [r["prediction"] for r in one["sample_rows"][name]] == [r["prediction"] for r in four["sample_rows"][name]]
        assert one["tasks"][name]["metrics"] == four["tasks"][name]["metrics"]
    assert one["model"]["n_params"] == sum(p.numel() for p in model.parameters())
    assert one["model"]["weights_sha256"] is None


def test_chat_template_modes(model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    assert chat.use_chat_template(tok, "auto") is True and chat.use_chat_template(tok, "off") is False
    tok.chat_template = None
    assert chat.use_chat_template(tok, "auto") is False
    with pytest.raises(run_mod.UserError, match="no chat template"):
        chat.use_chat_template(tok, "on")


def test_plain_lm_eval_gives_the_same_numbers(model_dir, tmp_path):
    """What `lm_eval --model hf --model_args pretrained=DIR,dtype=float32 --device cpu --include_path tasks
    --tasks ... --batch_size 8 --limit 4 --seed 1234 --apply_chat_template` computes, on the shipped tasks (all three
    multiple-choice forms; --limit 4 is one whole item of the circular form, 4 rotations).

    (The CLI's TaskManager also indexes lm-eval's ~200 built-in folders, 5 s, which changes nothing here.)"""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from soaes_bench.evaluation.writer import build_results, config_sha256, metric_table, sample_row

    names = ["soaes_domain_bpb", "soaes_domain_mc", "soaes_domain_mc_cloze", "soaes_domain_mc_circular",
             "soaes_domain_qa"]
    ours = run_mod.run(model_dir=model_dir, tasks=",".join(names), limit=4, output=tmp_path / "ours")
    plain = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={model_dir},dtype=float32", device="cpu", batch_size=8, limit=4,
        tasks=names, apply_chat_template=True,
        task_manager=TaskManager(include_path=str(tasks_dir()), include_defaults=False),
        random_seed=1234, numpy_random_seed=1234, torch_random_seed=1234, fewshot_random_seed=1234,
    )
    assert ours["tasks"]["soaes_domain_bpb"]["metrics"]["bits_per_byte"]["value"] > 0
    assert set(ours["tasks"]["soaes_domain_mc_circular"]["metrics"]) == {"circular_acc", "rotation_acc"}
    assert set(ours["tasks"]["soaes_domain_mc_cloze"]["metrics"]) == {"cloze_acc", "cloze_acc_norm"}
    rebuilt = build_results(plain, task_groups={}, model={}, env={}, suite="custom", seed=1234, limit=4)["tasks"]
    for name in names:
        assert metric_table(plain["results"][name]) == ours["tasks"][name]["metrics"]
        assert rebuilt[name].get("positions") == ours["tasks"][name].get("positions")
        assert config_sha256(plain["configs"][name]) == ours["tasks"][name]["config_sha256"]
        rows = _rows(tmp_path / "ours" / ours["tasks"][name]["samples"])
        assert [sample_row(s) for s in sorted(plain["samples"][name], key=lambda s: s["doc_id"])] == rows


def test_ls_lists_suites_tasks_and_models(capsys):
    assert cli.main(["ls"]) == 0
    out = capsys.readouterr().out
    for name in ("soaes_general", "soaes_domain", "soaes_domain_qa", "generate_until", "multiple_choice",
                 "embedded models:"):
        assert name in out
    n_qa = len(_rows(tasks_dir() / "soaes_domain" / "data" / "domain_qa.jsonl"))
    assert f"{n_qa:>6} items" in out
