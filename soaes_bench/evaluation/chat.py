"""The chat template and the tokens that stop generation, for any tokenizer: a model's chat template is used when its
tokenizer has one (`--chat-template auto`; `on`/`off` force it), and each generated row ends at the model's eos ids,
the tokenizer's eos and the template's end-of-turn token (`stop_token_ids` says why)."""

from __future__ import annotations

from soaes_bench.errors import UserError

CHAT_MODES = ("auto", "on", "off")


def use_chat_template(tokenizer, mode: str = "auto") -> bool:
    if mode not in CHAT_MODES:
        raise UserError(f"--chat-template: must be one of {', '.join(CHAT_MODES)}, got {mode!r}")
    has = bool(getattr(tokenizer, "chat_template", None))
    if mode == "on" and not has:
        raise UserError("--chat-template on: the tokenizer has no chat template")
    return has if mode == "auto" else mode == "on"


def _special_tokens(tokenizer) -> set[str]:
    return set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())


def chat_end_token(tokenizer) -> str | None:
    """The special token that closes an assistant turn in the tokenizer's chat template (<|im_end|> in ChatML,
    <|eot_id|> in Llama 3, <end_of_turn> in Gemma, </s> in Mistral), found by rendering one exchange; None without
    a template or when the template closes turns with no special token."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    marker = "\u2063soaes-bench\u2063"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "?"},
                                              {"role": "assistant", "content": marker}], tokenize=False)
    except Exception:  # noqa: BLE001 -- a template that refuses this exchange simply gives no extra stop
        return None
    tail = text.split(marker, 1)[1].lstrip() if isinstance(text, str) and marker in text else ""
    return next((t for t in sorted(_special_tokens(tokenizer), key=len, reverse=True) if t and tail.startswith(t)),
                None)


def stop_token_ids(model, tokenizer, stop, end_of_turn: str | None = None) -> list[int]:
    """Token ids that end a row of greedy generation: the model's generation_config eos ids, the tokenizer's eos,
    the chat template's end-of-turn token and every `until` stop string that is one special token.

    Why: lm-eval stops a batch only when every row has met a stop string, decodes rows with the special tokens
    dropped, then cuts at the stop strings. A row that emits a special stop token which is not an eos id (e.g.
    <|im_end|> or <|eot_id|> of a model whose generation_config lists only its document eos) would go on
    generating, and the text after that token would be scored. As eos ids, such rows end (HF pads them) on any
    model, and greedy outputs no longer depend on the batch. The shipped models list both of their stop tokens in
    generation_config already, so their generations are unchanged.
    """
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = list(eos) if isinstance(eos, (list, tuple)) else [] if eos is None else [eos]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    specials = _special_tokens(tokenizer)
    for s in [*(stop or []), *([end_of_turn] if end_of_turn else [])]:
        if s in specials:
            ids.append(tokenizer.convert_tokens_to_ids(s))
    return list(dict.fromkeys(i for i in ids if isinstance(i, int) and i >= 0))
