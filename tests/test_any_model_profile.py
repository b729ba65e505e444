"""The profiler on models that are not the shipped Qwen2 pair: a Llama pair with its own tokenizer and no chat
template, a pair whose vocabularies differ (refused before any weight is read), a draft with a padded embedding
matrix, and the cache keyword of older transformers releases."""

import json

import pytest
import torch

from soaes_bench.cli import main
from soaes_bench.speculative import decode
from soaes_bench.speculative.decode import cache_kwarg, check_compatible, speculative_generate, target_generate
from soaes_bench.speculative.model_pair import make_qwen2, truncated_copy

PROMPTS = ["The board reviewed the annual report.", "Market reform and capital invest in the company."]


def _llama_tokenizer(out_dir):
    """A byte-level BPE with Llama's special tokens (<s>, </s>, <unk>) and no chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [f"{a} {b} of the {c}." for a in ("The board", "A market", "Capital", "Reform")
             for b in ("reviewed", "invested in", "reported", "changed") for c in ("company", "law", "assets", "state")]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(out_dir)
    return fast


def _llama(tok, layers: int, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False, initializer_range=0.2, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float().eval()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.eos_token_id
    return model


def _save(model, tok, path):
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def llama_dirs(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("llama")
    tok = _llama_tokenizer(root / "tok")
    target = _llama(tok, 2, seed=0)
    draft = truncated_copy(target, 1)  # shares the target's first layer: a nonzero acceptance without training
    return _save(target, tok, root / "target"), _save(draft, tok, root / "draft"), tok


def test_llama_pair_with_its_own_tokenizer_profiles_losslessly(llama_dirs, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    t_dir, d_dir, tok = llama_dirs
    assert not tok.chat_template
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["profile", "--target", str(t_dir), "--draft", str(d_dir), "--prompts", str(prompts), "--gamma", "1,3",
               "--contexts", "24", "--max-new-tokens", "10", "--repeats", "1", "--num-prompts", "2",
               "--hf-baseline", "--save-outputs", "--threads", "1", "--dtype", "float32", "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "profile.json").read_text())
    assert rep["config"]["chat_template"] is False  # plain text: no template to apply
    assert rep["model"]["layers"] == 2 and rep["draft"]["layers"] == 1 and rep["model"]["hidden"] == 64
    assert rep["env"]["attn_implementation"] == "eager" and rep["env"]["timer"] == "perf_counter"
    assert all(s["lossless"] == 1.0 for s in rep["settings"])
    assert all(s["hf_lossless"] == 1.0 for s in rep["settings"] if s["category"] != "long")
    rows = [json.loads(line) for line in (out / "outputs.jsonl").read_text().splitlines()]
    assert rows and all(r["spec_ids"] == r["target_ids"] for r in rows)
    # and the target-only output is what transformers' own greedy generate gives
    target = AutoModelForCausalLM.from_pretrained(t_dir, dtype=torch.float32, attn_implementation="eager").eval()
    for r in rows[:3]:
        ids = torch.tensor([r["prompt_ids"]])
        hf = target.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)[0, ids.shape[1]:].tolist()
        assert r["spec_ids"] == hf


def test_pair_with_different_vocabularies_is_refused_before_loading_weights(llama_dirs, tmp_path, capsys,
                                                                           monkeypatch):
    from soaes_bench import models
    from soaes_bench.training.fixtures import tiny_tokenizer

    t_dir, _, _ = llama_dirs
    qtok = tiny_tokenizer(tmp_path / "qtok")
    d_dir = _save(make_qwen2(len(qtok), 1, 32), qtok, tmp_path / "qwen_draft")
    for path in d_dir.glob("*.safetensors"):  # any weight read would now fail with another message
        path.write_bytes(b"not a safetensors file")

    def no_weights(*a, **k):
        raise AssertionError("weights loaded")

    monkeypatch.setattr(models, "load_model", no_weights)
    capsys.readouterr()  # drop save_pretrained's progress bars
    rc = main(["profile", "--target", str(t_dir), "--draft", str(d_dir), "--prompts", "all", "--repeats", "1",
               "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "draft is not compatible with target" in err and "vocab_size 320 (target) vs 400 (draft)" in err
    assert "tokenizer vocabularies differ" in err
    assert not (tmp_path / "out" / "profile.json").exists()


def test_draft_with_a_padded_embedding_matrix(tmp_path):
    """Same tokenizer, draft embedding padded to more rows: accepted, greedy lossless, sampling runs."""
    from soaes_bench.training.fixtures import tiny_tokenizer

    tok = tiny_tokenizer(tmp_path / "tok")
    eos = [tok.eos_token_id]
    target = make_qwen2(len(tok), 2, 64, seed=0, eos_token_id=eos, init_range=0.2)
    padded = make_qwen2(len(tok) + 64, 1, 32, seed=1, eos_token_id=eos, init_range=0.2)
    check_compatible(target, padded, tok, tok)
    with pytest.raises(Exception, match="vocab_size"):
        check_compatible(target, padded)  # without tokenizers nothing says the extra rows are padding
    assert decode.vocab_limit(target, padded) == len(tok) and decode.vocab_limit(target, target) is None
    prompt = tok("国有资产监督", add_special_tokens=False)["input_ids"]
    base = target_generate(target, prompt, 16, eos)
    assert speculative_generate(target, padded, prompt, 3, 16, eos).tokens == base.tokens
    g = torch.Generator().manual_seed(0)
    out = speculative_generate(target, padded, prompt, 3, 16, eos, temperature=1.0, generator=g)
    assert 1 <= len(out.tokens) <= 16 and max(out.tokens) < len(tok)


def test_cache_keyword_follows_the_forward_signature():
    class New(torch.nn.Module):
        def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs):
            pass

    class Old(torch.nn.Module):
        def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs):
            pass

    class Both(torch.nn.Module):
        def forward(self, input_ids=None, cache=None, past_key_values=None, **kwargs):
            pass

    assert cache_kwarg(New()) == "cache" and cache_kwarg(Old()) == "past_key_values"
    assert cache_kwarg(Both()) == "cache" and cache_kwarg(lambda **kw: None) == "cache"
    target = make_qwen2(50, 1, 32)
    assert cache_kwarg(target) in ("cache", "past_key_values")


def test_config_fields_are_read_with_fallbacks():
    from types import SimpleNamespace

    from soaes_bench.records.provenance import _config_int

    gpt2 = SimpleNamespace(config=SimpleNamespace(n_positions=1024, n_layer=12, n_embd=768, vocab_size=50257))
    assert decode.max_positions(gpt2) == 1024
    assert _config_int(gpt2.config, ("num_hidden_layers", "n_layer")) == 12
    assert decode.max_positions(SimpleNamespace(config=SimpleNamespace())) is None
