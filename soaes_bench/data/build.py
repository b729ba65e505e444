"""`soaes-bench data build`: every corpus, SFT set, eval set and the tokenizer, deterministically from --seed.

    soaes-bench data build                 # same seed + same pinned sources => byte-identical files
    soaes-bench data build --verify        # only re-hash the files on disk against training/data/MANIFEST.json

Order: verify/extract sources -> split by document (corpus.py) -> training corpora and SFT sets -> tokenizer on
training text only -> eval sets from held-out documents -> MANIFEST.json (sha256 of every built file) and the
"Built files" section of DATA_CARD.md. A rebuild reports whether every hash matches the previous manifest.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from soaes_bench import paths
from soaes_bench.data import corpus, evalsets, knowledge, sft, sources, tokenizer
from soaes_bench.defaults import SEED
from soaes_bench.errors import UserError
from soaes_bench.io import atomic_write_text, read_json, read_jsonl, sha256_file, write_json, write_jsonl

MANIFEST_SCHEMA = "soaes-bench/data-manifest"
TRAINING_FILES = ("general.jsonl", "domain.jsonl", "domain_core.jsonl", "sft_stage1.jsonl", "sft_stage2.jsonl")
EVAL_FILES = {
    "soaes_general": ("zh_text.jsonl", "en_text.jsonl", "general_mc.jsonl", "general_gen.jsonl"),
    "soaes_domain": ("domain_text.jsonl", "domain_qa.jsonl", "domain_mc.jsonl", "domain_knowledge.jsonl",
                     "domain_knowledge_mc.jsonl"),
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
CARD_BEGIN, CARD_END = "<!-- built-files:begin -->", "<!-- built-files:end -->"


def data_dir() -> Path:
    return paths.training_dir() / "data"


def manifest_path() -> Path:
    """training/data/MANIFEST.json: what `data build` wrote last (seed, sources, sha256/rows/chars per file)."""
    return data_dir() / "MANIFEST.json"


def read_manifest(path: str | Path | None = None) -> dict:
    m = read_json(path or manifest_path())
    if m.get("schema") != MANIFEST_SCHEMA or not isinstance(m.get("files"), dict):
        raise UserError(f"{path or manifest_path()}: not a {MANIFEST_SCHEMA} file")
    return m


def verify_manifest(manifest: dict | None = None) -> list[str]:
    """Files (repo-relative) whose sha256 differs from the manifest or that are missing; [] means all identical."""
    manifest = manifest or read_manifest()
    bad = []
    for rel, info in sorted(manifest["files"].items()):
        p = paths.REPO_ROOT / rel
        if not p.is_file() or sha256_file(p) != info["sha256"]:
            bad.append(rel)
    return bad


def _stats(path: Path) -> dict:
    info = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    if path.suffix == ".jsonl":
        rows = read_jsonl(path)
        info["rows"] = len(rows)
        info["chars"] = sum(_row_chars(r) for r in rows)
    return info


def _row_chars(r: dict) -> int:
    if "text" in r:
        return len(r["text"])
    if "messages" in r:
        return sum(len(m["content"]) for m in r["messages"])
    return len(r.get("question", "")) + len(str(r.get("answer", ""))) + sum(map(len, r.get("choices", [])))


def _rel(p: Path) -> str:
    return p.resolve().relative_to(paths.REPO_ROOT).as_posix()


def eval_sets(c: corpus.Corpus, seed: int, handwritten=None, sft_rows: list[dict] | None = None
              ) -> dict[str, dict[str, list[dict]]]:
    """suite -> file name -> rows. `handwritten` (expert_handwritten.jsonl) fixes the core split
    (sft.knowledge_split); `sft_rows` are the built SFT sets (made here when not given)."""
    split = sft.knowledge_split(c, seed, handwritten)
    if sft_rows is None:
        sft_rows = sft.stage1(c, seed) + sft.stage2(c, seed, handwritten, log=lambda m: None, split=split)
    return {
        "soaes_general": {"zh_text.jsonl": evalsets.zh_text(c, seed), "en_text.jsonl": evalsets.en_text(c, seed),
                          "general_mc.jsonl": evalsets.general_mc(c, seed),
                          "general_gen.jsonl": evalsets.general_gen(c, seed)},
        "soaes_domain": {**evalsets.domain_sets(c, seed), **knowledge.knowledge_sets(c, seed, split, sft_rows)},
    }


def build(seed: int = SEED, cache: Path | None = None, with_tokenizer: bool = True, log=print) -> dict:
    """Build everything; returns the manifest dict (also written to manifest_path())."""
    if not (paths.REPO_ROOT / "tasks").is_dir() or not paths.training_dir().is_dir():
        raise UserError(f"{paths.REPO_ROOT}: data build needs a source checkout (tasks/ and training/ next to the package)")
    cache = sources.cache_dir(cache)
    src_paths = sources.prepare_all(cache)
    c = corpus.load(src_paths, seed)
    out = data_dir()
    handwritten = out / "expert_handwritten.jsonl"
    split = sft.knowledge_split(c, seed, handwritten)  # SOAE-core articles: SFT part vs knowledge-eval part
    log(f"SOAE-core articles: {len(split.sft)} SFT part ({len(split.forced)} cited by hand-written items), "
        f"{len(split.eval)} eval part (domain knowledge sets)")

    training = {
        "general.jsonl": [d.row() for d in corpus.general_docs(c, seed)],
        "domain.jsonl": [d.row() for d in corpus.domain_docs(c, seed)],
        "domain_core.jsonl": [d.row() for d in corpus.core_docs(c)],
        "sft_stage1.jsonl": sft.stage1(c, seed),
        "sft_stage2.jsonl": sft.stage2(c, seed, handwritten, log=log, split=split),
    }
    written: list[Path] = []
    for name, rows in training.items():
        written.append(write_jsonl(out / name, rows))
        log(f"wrote {_rel(out / name)}: {len(rows)} rows")

    if with_tokenizer:
        # Hand-written SFT items are left out on purpose: that file is edited by hand, and the tokenizer (shared by
        # every trained model) must not change when it does.
        generated = [r for r in training["sft_stage2.jsonl"] if r["kind"] == "generated"]
        texts = tokenizer.training_texts(training["general.jsonl"], training["domain.jsonl"],
                                         training["sft_stage1.jsonl"] + generated)
        tokenizer.save(texts, paths.TOKENIZER_DIR)
        written += [paths.TOKENIZER_DIR / f for f in sorted(p.name for p in paths.TOKENIZER_DIR.iterdir())]
        log(f"wrote {_rel(paths.TOKENIZER_DIR)}/ (vocab {tokenizer.VOCAB_SIZE})")

    sft_rows = training["sft_stage1.jsonl"] + training["sft_stage2.jsonl"]
    for suite, rows_by_file in eval_sets(c, seed, handwritten, sft_rows).items():
        for name, rows in rows_by_file.items():
            p = paths.REPO_ROOT / "tasks" / suite / "data" / name
            written.append(write_jsonl(p, rows))
            log(f"wrote {_rel(p)}: {len(rows)} rows")

    manifest = {
        "schema": MANIFEST_SCHEMA, "schema_version": 1, "seed": seed,
        "sources": {s.name: {"package": s.package, "version": s.version, "file": s.filename, "sha256": s.sha256,
                             "licence": s.licence} for s in sources.SOURCES.values()},
        "inputs": {_rel(handwritten): sha256_file(handwritten)} if handwritten.is_file() else {},
        "files": {_rel(p): _stats(p) for p in written},
    }
    return manifest


def _compare(old: dict | None, new: dict) -> list[str]:
    if old is None:
        return []
    return sorted(k for k in set(old["files"]) | set(new["files"])
                  if old["files"].get(k, {}).get("sha256") != new["files"].get(k, {}).get("sha256"))


def card_section(manifest: dict) -> str:
    """The generated DATA_CARD.md block: one row per built file with rows, characters and sha256."""
    lines = [CARD_BEGIN, "", f"Built by `soaes-bench data build --seed {manifest['seed']}`; "
             "`soaes-bench data build --verify` re-hashes these files against `training/data/MANIFEST.json`.", "",
             "| file | rows | characters | bytes | sha256 |", "|---|---:|---:|---:|---|"]
    for rel, info in manifest["files"].items():
        lines.append(f"| `{rel}` | {info.get('rows', '')} | {info.get('chars', '')} | {info['bytes']} | `{info['sha256']}` |")
    for rel, h in manifest["inputs"].items():
        lines.append(f"| `{rel}` (input, hand-written) |  |  |  | `{h}` |")
    return "\n".join(lines + ["", CARD_END])


def update_card(manifest: dict, card: Path | None = None) -> None:
    card = card or paths.REPO_ROOT / "DATA_CARD.md"
    if not card.is_file():
        return
    text = card.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(CARD_BEGIN) + ".*?" + re.escape(CARD_END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: card_section(manifest), text)
    else:
        text = text.rstrip("\n") + "\n\n## Built files\n\n" + card_section(manifest) + "\n"
    atomic_write_text(card, text)


def cli_build(args: argparse.Namespace) -> int:
    if getattr(args, "verify", False):
        bad = verify_manifest()
        n = len(read_manifest()["files"])
        if bad:
            print(f"{len(bad)} of {n} files differ from {_rel(manifest_path())}:\n  " + "\n  ".join(bad))
            return 1
        print(f"all {n} files match {_rel(manifest_path())}")
        return 0
    old = read_manifest() if manifest_path().is_file() else None
    manifest = build(seed=args.seed, cache=args.cache_dir, with_tokenizer=not args.no_tokenizer,
                     log=lambda m: print(m, file=sys.stderr))
    if not args.no_tokenizer or old is None:
        files = manifest["files"]
    else:  # keep the previous tokenizer entries when it was not retrained
        files = {**{k: v for k, v in old["files"].items() if "/assets/tokenizer/" in f"/{k}"}, **manifest["files"]}
    manifest["files"] = dict(sorted(files.items()))
    write_json(manifest_path(), manifest)
    update_card(manifest)
    width = max(map(len, manifest["files"]))
    for rel, info in manifest["files"].items():
        rows = f"{info['rows']:>7} rows {info['chars']:>10} chars" if "rows" in info else " " * 30
        print(f"{rel:<{width}} {rows} {info['bytes'] / 1e6:8.2f} MB")
    changed = _compare(old, manifest)
    if old is not None:
        if changed:
            print(f"changed since the previous build (seed {old['seed']}): " + ", ".join(changed))
        else:
            print("identical to the previous build (every sha256 matches the old MANIFEST.json)")
    return 0
