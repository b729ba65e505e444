"""Prompts for the profiler: the shipped eval questions by category, a user file, and long contexts.

Categories: "domain" (tasks/soaes_domain/data/domain_qa.jsonl questions), "general"
(tasks/soaes_general/data/general_gen.jsonl questions), and "long": held-out domain text
(tasks/soaes_domain/data/domain_text.jsonl) concatenated, repeated when short, and cut to exactly the requested
number of tokens. Acceptance depends on what is generated, so each category is measured separately.
"""

from __future__ import annotations

from pathlib import Path

from soaes_bench.errors import UserError
from soaes_bench.io import iter_jsonl

SUITE_FILES = {
    "domain": ("soaes_domain", "domain_qa.jsonl"),
    "general": ("soaes_general", "general_gen.jsonl"),
}
LONG_TEXT_FILE = ("soaes_domain", "domain_text.jsonl")
TEXT_FIELDS = ("text", "question", "prompt")


def _data_file(suite: str, name: str) -> Path:
    from soaes_bench.paths import tasks_dir

    try:
        return tasks_dir() / suite / "data" / name
    except FileNotFoundError as e:
        raise UserError(f"--prompts: {e}; pass --prompts FILE") from None


def read_prompt_file(path: str | Path) -> list[str]:
    """Prompts from a JSONL file (`text`, `question` or `prompt` field) or a text file (one prompt per line)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        out = []
        for lineno, row in iter_jsonl(path):
            field = next((f for f in TEXT_FIELDS if isinstance(row.get(f), str)), None)
            if field is None:
                raise UserError(f"{path}:{lineno}: no text/question/prompt string field")
            out.append(row[field])
    else:
        try:
            out = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except FileNotFoundError:
            raise UserError(f"{path}: file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: cannot read ({e.__class__.__name__})") from None
    if not out:
        raise UserError(f"{path}: no prompts")
    return out


def load_prompts(spec: str = "all", num_prompts: int = 8) -> dict[str, list[str]]:
    """category -> up to num_prompts prompt texts. spec: "domain", "general", "all" or a prompt file."""
    if spec in ("all", *SUITE_FILES):
        out = {}
        for cat in (SUITE_FILES if spec == "all" else [spec]):
            path = _data_file(*SUITE_FILES[cat])
            if not path.is_file():
                raise UserError(f"{path}: prompt set missing (run `soaes-bench data build`, or pass --prompts FILE)")
            out[cat] = read_prompt_file(path)[:num_prompts]
        return out
    path = Path(spec)
    if not path.exists():
        raise UserError(f"--prompts: {spec!r} is neither a suite (domain, general, all) nor an existing file")
    return {path.stem: read_prompt_file(path)[:num_prompts]}


def load_long_text() -> str | None:
    """Held-out domain text for long contexts, or None when the data file is missing."""
    try:
        path = _data_file(*LONG_TEXT_FILE)
    except UserError:
        return None
    if not path.is_file():
        return None
    return "\n".join(row["text"] for _, row in iter_jsonl(path) if isinstance(row.get("text"), str)) or None


def encode(tokenizer, text: str, chat: bool) -> list[int]:
    """Token ids of a user turn, wrapped in the chat template (with the assistant header) when chat is on."""
    if chat:
        text = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise UserError(f"prompt {text[:40]!r}: encodes to no tokens")
    return ids


def long_contexts(tokenizer, text: str, length: int, n: int) -> list[list[int]]:
    """n windows of exactly `length` tokens from `text` (repeated as needed), at evenly spaced offsets."""
    if length < 1:
        raise UserError(f"--contexts: context length must be >= 1, got {length}")
    base = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not base:
        raise UserError("long-context text encodes to no tokens")
    stride = max(1, len(base) // max(n, 1))
    need = length + stride * n
    stream = (base * (need // len(base) + 1))[:need]
    return [stream[i * stride: i * stride + length] for i in range(n)]
