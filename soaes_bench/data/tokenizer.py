"""The shared tokenizer: byte-level BPE (vocab 12,000) trained on training text only, ChatML chat template.

Byte-level so no Chinese character or English byte is ever <unk>; a small vocabulary because every model in the
project is tiny. Trained single-pass from an iterator in a fixed order, so the same corpus gives the same
tokenizer.json (tests/test_data_build.py and the build check this).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

VOCAB_SIZE = 12_000
EOS = "<|endoftext|>"
SPECIALS = [EOS, "<|im_start|>", "<|im_end|>"]
MODEL_MAX_LENGTH = 2048
# ChatML as in docs/DESIGN.md (Qwen2 style, no default system prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def train_bpe(texts: Iterable[str], vocab_size: int = VOCAB_SIZE):
    """A `tokenizers.Tokenizer` trained on `texts` (byte-level pre-tokenizer and decoder, the 3 specials first)."""
    # Rayon work-stealing does not change the merge counts, but one thread keeps CPU use polite on a shared box.
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def wrap(tok):
    """Wrap in PreTrainedTokenizerFast with the eos/pad token, length limit and chat template."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS, model_max_length=MODEL_MAX_LENGTH,
        chat_template=CHAT_TEMPLATE, clean_up_tokenization_spaces=False,
    )


def save(texts: Iterable[str], out_dir: str | os.PathLike, vocab_size: int = VOCAB_SIZE) -> Path:
    """Train and save as an HF tokenizer dir; written to a temp dir first and swapped in, so readers never see half."""
    out_dir = Path(out_dir)
    hf = wrap(train_bpe(texts, vocab_size))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        hf.save_pretrained(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the shipped asset dir must be world-readable
        old = out_dir.with_name(f".{out_dir.name}.old")
        if out_dir.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def training_texts(general: list[dict], domain: list[dict], sft: list[dict]) -> Iterable[str]:
    """Documents, then every chat turn's content: what the models will actually be trained on."""
    for row in general:
        yield row["text"]
    for row in domain:
        yield row["text"]
    for row in sft:
        for m in row["messages"]:
            yield m["content"]
