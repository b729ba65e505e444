"""Tiny, deterministic stand-ins for the shared tokenizer and corpora, for tests and the micro recipes.

They have the same shape as the real assets (byte-level BPE with <|endoftext|>/<|im_start|>/<|im_end|> and a
ChatML template; DESIGN.md document and SFT schemas), but build in well under a second.
"""

from __future__ import annotations

import random
from pathlib import Path

from soaes_bench.io import write_jsonl

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_WORDS_ZH = ["国有", "资产", "企业", "监督", "管理", "委员会", "出资人", "职责", "董事会", "改革", "发展", "经济",
             "市场", "法律", "规定", "投资", "利润", "国家", "公司", "制度"]
_WORDS_EN = ["state", "owned", "assets", "enterprise", "board", "capital", "market", "law", "reform", "profit",
             "the", "of", "and", "company", "invest"]


def tiny_text(rng: random.Random, n_words: int) -> str:
    words = _WORDS_ZH if rng.random() < 0.7 else _WORDS_EN
    sep = "" if words is _WORDS_ZH else " "
    return sep.join(rng.choice(words) for _ in range(n_words)) + ("。" if sep == "" else ".")


def tiny_tokenizer(out_dir: str | Path, vocab_size: int = 400):
    """Train a byte-level BPE on generated text and save it as an HF fast tokenizer dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    texts = [tiny_text(rng, rng.randint(5, 40)) for _ in range(300)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    fast.chat_template = CHATML
    fast.save_pretrained(out_dir)
    return fast


def tiny_corpus(path: str | Path, n_docs: int, seed: int, prefix: str = "doc", source: str = "tiny") -> Path:
    rng = random.Random(seed)
    rows = [{"id": f"{prefix}-{i}", "text": tiny_text(rng, rng.randint(10, 120)), "source": source, "lang": "zh"}
            for i in range(n_docs)]
    return write_jsonl(path, rows)


def tiny_sft(path: str | Path, n: int, seed: int, prefix: str = "sft") -> Path:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q, a = tiny_text(rng, rng.randint(3, 12)), tiny_text(rng, rng.randint(3, 30))
        rows.append({"id": f"{prefix}-{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                     "source": "tiny", "kind": "generated", "cite": None})
    return write_jsonl(path, rows)


def micro_pipeline(root: str | Path) -> dict:
    """training/recipes/micro_pipeline.yaml pointed at a tiny tokenizer, corpora, SFT sets and init model under
    `root` (for tests that run the whole pipeline in seconds). Returns the recipe as a dict."""
    import yaml

    from soaes_bench.paths import training_dir
    from soaes_bench.models import new_model, save_model

    root = Path(root)
    tok = tiny_tokenizer(root / "tok")
    tiny_corpus(root / "general.jsonl", 60, seed=1, prefix="g")
    tiny_corpus(root / "domain.jsonl", 60, seed=2, prefix="d")
    tiny_sft(root / "sft1.jsonl", 24, seed=3, prefix="s1")
    tiny_sft(root / "sft2.jsonl", 24, seed=4, prefix="s2")
    save_model(new_model("micro", tok, seed=0, max_position=128), tok, root / "init")
    r = yaml.safe_load((training_dir() / "recipes" / "micro_pipeline.yaml").read_text(encoding="utf-8"))
    r.update(init=str(root / "init"), tokenizer=str(root / "tok"))
    r["cpt"].update(domain=str(root / "domain.jsonl"), general=str(root / "general.jsonl"))
    r["sft"]["stages"][0]["data"] = str(root / "sft1.jsonl")
    r["sft"]["stages"][1]["data"] = str(root / "sft2.jsonl")
    r["sft"]["general"] = str(root / "general.jsonl")
    r["distill"]["data"] = [str(root / "domain.jsonl")]
    return r
