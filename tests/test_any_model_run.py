"""`soaes-bench run` on local models of other shapes than the shipped Qwen2 ones, built here from nothing: every
task type (multiple choice letter / cloze / circular, generation, bits per byte) runs and is recorded right.

- a LlamaForCausalLM (untied embeddings, 4 heads over 2 KV heads) with its own tokenizer: a character BPE with a
  Metaspace pre-tokenizer trained on the fixture's Chinese text, <s> prepended to every text, </s> as eos, <unk>,
  no pad token and no chat template: the suites run in plain text and say so;
- a Qwen2.5-Instruct-like model: byte-level BPE whose eos is <|im_end|> (pad <|endoftext|>) and whose chat
  template injects a default system message: the prompts go through it, as the samples show;
- a Llama-3-like chat model whose turns end in <|eot_id|> while its generation_config stops only at
  <|end_of_text|>, fitted to answer "好<|eot_id|>多余的话。": generation must stop at the end of the turn.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from soaes_bench import cli
from soaes_bench.evaluation import chat, suites

FIXTURES = Path(__file__).parent / "fixtures" / "tasks_data"
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
# Qwen2.5-Instruct's template without its tool branch: a default system message unless the chat brings one
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\n" + QWEN_SYSTEM + "<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
LLAMA3_TEMPLATE = ("<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                   "{{ m['content'] }}<|eot_id|>{% endfor %}"
                   "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
TYPES = {"soaes_general_mc": "multiple_choice", "soaes_general_mc_cloze": "multiple_choice",
         "soaes_general_mc_circular": "multiple_choice", "soaes_general_gen": "generate_until",
         "soaes_general_zh_bpb": "loglikelihood_rolling", "soaes_general_en_bpb": "loglikelihood_rolling"}


def _texts() -> list[str]:
    return [str(v) for f in sorted(FIXTURES.rglob("*.jsonl")) for line in f.open(encoding="utf-8") if line.strip()
            for v in json.loads(line).values() if isinstance(v, (str, list))
            for v in (v if isinstance(v, list) else [v])]


def _llama_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(_texts(), trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _qwen25_tokenizer():
    from transformers import PreTrainedTokenizerFast

    tok = _byte_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], [QWEN_SYSTEM])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                 additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    hf.chat_template = QWEN25_TEMPLATE
    return hf


def _byte_bpe(specials: list[str], extra: list[str] = ()):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_texts() + list(extra), trainers.BpeTrainer(
        vocab_size=700, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def _llama3_tokenizer():
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=_byte_bpe(LLAMA3_SPECIALS, ["多余的话。"]), bos_token="<|begin_of_text|>",
                                 eos_token="<|end_of_text|>", additional_special_tokens=LLAMA3_SPECIALS[2:])
    hf.chat_template = LLAMA3_TEMPLATE
    return hf


def _save(model, tok, out: Path) -> Path:
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _llama_tokenizer()
    assert tok.chat_template is None and tok.pad_token is None
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return _save(LlamaForCausalLM(cfg), tok, tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def qwen25_dir(tmp_path_factory):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = _qwen25_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=512,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      bos_token_id=None)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.eos_token_id = [tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    return _save(model, tok, tmp_path_factory.mktemp("qwen25"))


def _run(model_dir: Path, out: Path, fixture_tasks, capsys, *extra) -> tuple[dict, str]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(suites, "tasks_dir", lambda: fixture_tasks)
        code = cli.main(["run", "--model", str(model_dir), "--tasks", ",".join(TYPES), "--output", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    return json.loads((out / "results.json").read_text(encoding="utf-8")), err


def _rows(out: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (out / "samples" / f"{task}.jsonl").open(encoding="utf-8")]


def _check_every_task(res: dict, out: Path) -> None:
    assert set(res["tasks"]) == set(TYPES) and res["backend"]["name"] == "hf"
    for name, t in res["tasks"].items():
        assert t["output_type"] == TYPES[name] and t["n"] > 0, name
        values = [m["value"] for m in t["metrics"].values()]
        assert values and all(v is None or math.isfinite(v) for v in values), name
        assert len(_rows(out, name)) == t["n"]
    for name in ("soaes_general_mc", "soaes_general_mc_circular"):
        assert 0 <= res["tasks"][name]["metrics"]["acc" if name.endswith("mc") else "circular_acc"]["value"] <= 1
    bpb = res["tasks"]["soaes_general_zh_bpb"]["metrics"]["bits_per_byte"]["value"]
    assert 0 < bpb < 64  # a random model over a ~500-token vocabulary: some bits per byte, finite
    assert all("prompt" not in r for r in _rows(out, "soaes_general_zh_bpb"))  # the document is the input


def test_llama_with_its_own_tokenizer_runs_in_plain_text(llama_dir, fixture_tasks, tmp_path, capsys):
    out = tmp_path / "llama"
    res, err = _run(llama_dir, out, fixture_tasks, capsys, "--limit", "4")
    _check_every_task(res, out)
    assert res["env"]["chat_template"] is False
    assert "no chat template: prompts are plain text" in err
    assert res["model"]["layers"] == 2 and res["model"]["hidden"] == 48 and res["model"]["tokenizer_sha256"]
    mc = _rows(out, "soaes_general_mc")[0]
    assert mc["prompt"].startswith("问题：") and mc["prompt"].endswith("答案：")  # no template, no special tokens
    assert mc["prediction"] in "ABCD"
    for row in _rows(out, "soaes_general_gen"):
        assert isinstance(row["prediction"], str) and "</s>" not in row["prediction"] and "<s>" not in row["prediction"]


def test_qwen25_chat_template_with_default_system_prompt(qwen25_dir, fixture_tasks, tmp_path, capsys):
    out = tmp_path / "qwen25"
    res, err = _run(qwen25_dir, out, fixture_tasks, capsys, "--limit", "4")
    _check_every_task(res, out)
    assert res["env"]["chat_template"] is True and "no chat template" not in err
    for task in ("soaes_general_mc", "soaes_general_mc_cloze", "soaes_general_gen"):
        prompt = _rows(out, task)[0]["prompt"]
        head = f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n<|im_start|>user\n"
        assert prompt.startswith(head) and (prompt[len(head):].startswith("问题：") != task.endswith("_gen")), prompt
        assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n"), prompt
    for row in _rows(out, "soaes_general_gen"):
        assert "<|im_end|>" not in row["prediction"] and "<|endoftext|>" not in row["prediction"]


@pytest.fixture(scope="module")
def llama3_dir(tmp_path_factory):
    """Fitted to answer every fixture question with 好<|eot_id|> and then, like a model that does not know where a
    turn ends, 多余的话。<|end_of_text|>; its generation_config stops at <|end_of_text|> only."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _llama3_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = LlamaForCausalLM(cfg)
    questions = [json.loads(line)["question"] for line in (FIXTURES / "soaes_general" / "general_gen.jsonl").open()]
    texts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                     add_generation_prompt=True) + "好<|eot_id|>多余的话。<|end_of_text|>"
             for q in questions]
    tok.pad_token = "<|end_of_text|>"
    enc = tok(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(60):  # loss ~0.07: greedy decoding then gives exactly the fitted reply
        model(**enc, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.generation_config.eos_token_id = tok.eos_token_id
    return _save(model, tok, tmp_path_factory.mktemp("llama3"))


def test_generation_stops_at_the_chat_templates_end_of_turn(llama3_dir, fixture_tasks, tmp_path, capsys):
    from transformers import AutoTokenizer

    assert chat.chat_end_token(AutoTokenizer.from_pretrained(llama3_dir)) == "<|eot_id|>"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(suites, "tasks_dir", lambda: fixture_tasks)
        code = cli.main(["run", "--model", str(llama3_dir), "--tasks", "soaes_general_gen", "--output",
                         str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err[-2000:]
    preds = [r["prediction"] for r in _rows(tmp_path / "run", "soaes_general_gen")]
    assert preds and all(p == "好" for p in preds), preds  # without the end-of-turn stop: "好多余的话。"


def test_stop_token_ids_of_other_tokenizers(llama_dir, qwen25_dir):
    from transformers import AutoTokenizer

    until = ["<|im_end|>", "<|endoftext|>", "\n\n"]  # the task YAMLs' stop strings
    llama = AutoTokenizer.from_pretrained(llama_dir)
    model = type("M", (), {"generation_config": type("G", (), {"eos_token_id": None})()})()
    assert chat.chat_end_token(llama) is None
    assert chat.stop_token_ids(model, llama, until) == [llama.eos_token_id]  # ChatML strings are no tokens here
    qwen = AutoTokenizer.from_pretrained(qwen25_dir)
    ids = chat.stop_token_ids(model, qwen, until, chat.chat_end_token(qwen))
    assert ids == [qwen.convert_tokens_to_ids("<|im_end|>"), qwen.convert_tokens_to_ids("<|endoftext|>")]
