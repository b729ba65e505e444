"""Named Qwen2 sizes and the save/load contract (bf16 safetensors on disk, float32 in memory, no pickle)."""

import json

import pytest
import torch

from soaes_bench.errors import UserError
from soaes_bench.training.fixtures import tiny_tokenizer
from soaes_bench.models import (SIZES, build_config, check_same_vocab, load_model, load_tokenizer, n_params,
                                new_model, save_model)



@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def test_target_config_matches_design(tok):
    c = build_config("target", tok)
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads) == (8, 384, 6, 2)
    assert c.intermediate_size == 1024 and c.max_position_embeddings == 2048 and c.tie_word_embeddings
    assert c.vocab_size == len(tok) and c.eos_token_id == tok.eos_token_id == c.pad_token_id
    assert c.rope_parameters["rope_theta"] == 10000.0


def test_param_counts_follow_the_sizes(tok):
    # tied embeddings counted once; with the 12k shared vocab the target is 17.2M (notes); here vocab is tiny
    V = len(tok)
    for name, s in SIZES.items():
        h, i, L = s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"]
        kv = h // s["num_attention_heads"] * s["num_key_value_heads"]
        per_layer = h * h * 2 + h * kv * 2 + (h + 2 * kv) + 3 * h * i + 2 * h  # q,o + k,v + qkv biases + mlp + 2 norms
        assert n_params(new_model(name, tok, seed=0)) == V * h + L * per_layer + h, name
    with pytest.raises(UserError, match="unknown model size"):
        build_config("huge", tok)


def test_save_bf16_load_fp32_roundtrip(tok, tmp_path):
    m = new_model("micro", tok, seed=3)
    out = save_model(m, tok, tmp_path / "m", extra_json={"soaes_training.json": {"steps": 1}})
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    # stored in bfloat16, but config.json names float32 so dtype="auto" loaders (plain lm-eval) compute in float32
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out, dtype="auto").dtype == torch.float32
    assert json.loads((out / "soaes_training.json").read_text()) == {"steps": 1}
    back = load_model(out)
    assert back.dtype == torch.float32
    w0, w1 = m.state_dict(), back.state_dict()
    for k in w0:
        torch.testing.assert_close(w1[k], w0[k].to(torch.bfloat16).float())
    assert back.lm_head.weight.data_ptr() == back.model.embed_tokens.weight.data_ptr()  # still tied
    assert tok.convert_tokens_to_ids("<|im_end|>") in back.generation_config.eos_token_id
    check_same_vocab(tok, load_tokenizer(out))
    # overwriting is atomic and leaves no temp dirs behind
    save_model(m, tok, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_load_refuses_non_model_dirs(tmp_path, tok):
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    with pytest.raises(UserError, match="config.json"):
        load_model(tmp_path / "a")
    (tmp_path / "a" / "config.json").write_text("{}")
    (tmp_path / "a" / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="safetensors"):
        load_model(tmp_path / "a")


def test_vocab_mismatch_is_refused(tok, tmp_path):
    other = tiny_tokenizer(tmp_path / "other", vocab_size=350)
    with pytest.raises(UserError, match="tokenizers differ"):
        check_same_vocab(tok, other)
