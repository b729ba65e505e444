"""`soaes-bench data check`: schemas, duplicates, train/eval contamination and the build manifest.

    soaes-bench data check                 # table; exit 0 ok, 1 check failed (leak / manifest), 2 bad input
    soaes-bench data check --json --max-leak 0.02

Why: every later number (bits-per-byte, ROUGE, acceptance rates) is only as good as the split behind it, so the
check refuses malformed rows outright (one line naming FILE:LINE and the field) and fails when an evaluation set
overlaps the training data.

Contamination is measured with 13-grams of units (13 Chinese characters or 13 English words, whitespace and
punctuation dropped; see overlap.py). For every (training set, eval set) pair and for each eval set against all
training data together it reports:
  share   fraction of eval items sharing at least one 13-gram with training,
  leak    fraction of items whose text is at least 80% covered by shared 13-grams (the gate, --max-leak 0.05),
  partial fraction of items at least 50% covered, and the fraction of all eval 13-grams found in training.
N-grams found in more than max(5, 2%) items of the same eval set are prompt templates or law titles and are
ignored. Why the gate is coverage and not "shares one 13-gram": on the built data (see DATA_CARD.md) 53-66% of
the domain items share a 13-gram with training only through law titles ("中华人民共和国证券投资基金法" is cited by
training laws) and statutory formulas repeated across laws ("对直接负责的主管人员和其他直接责任人员",
"构成犯罪的，依法追究刑事责任"), while the items at >= 80% coverage are real copies (a law reprinted in a
held-out newspaper issue, a review posted twice). 13 characters is longer than the stock phrases that matter
("履行出资人职责的机构" is 10) and a copy with a few characters changed keeps most of its 13-character stretches,
so its coverage stays high. The 80% "dirty" cut follows the Llama 2 contamination analysis.

Knowledge sets (schemas kgen/kmc: domain_knowledge*.jsonl) ask about SOAE-core articles that are in the CPT
corpus on purpose. For them the CPT (doc) files are the *knowledge source*: an item counts as sourced when its
`cite` ("<law> 第N条") names an article of a law document in a doc file and that article shares a 13-gram with
the item. Only the SFT sets (sft and handwritten schemas) can leak, and one leaked item fails the check: the
item's question or answer is an SFT turn (exact, normalised), its answer's content (law titles and article numbers
stripped, overlap.content; at least 6 units) occurs inside an SFT turn, or >= 80% of the content of its answer
text or of its question lies in SFT 13-grams (overlap.TextIndex.leak). The 5% coverage gate above applies to
them against the SFT sets only.
Python API: check_data(train, evals, ...) with explicit paths; default_files() lists the files of DESIGN.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soaes_bench import paths
from soaes_bench.data import overlap
from soaes_bench.data.schemas import KNOWLEDGE_SCHEMAS, SCHEMAS, infer_schema, knowledge_view, row_id
from soaes_bench.errors import UserError
from soaes_bench.io import iter_jsonl, read_json, sha256_file

NGRAM = 13
DEFAULT_MAX_LEAK = 0.05
MIN_COVERAGE = 0.8   # an item is leaked when this much of it lies in 13-grams seen in training
TEMPLATE_MIN, TEMPLATE_FRAC = 5, 0.02  # n-grams in more than max(5, 2% of items) eval items are templates
SHINGLE = 5          # MinHash shingles: 5 characters / 5 words
NUM_PERM = 128
BANDS = 16
NEAR_DUP_JACCARD = 0.8
MINHASH_SEED = 1234

TRAIN_FILES = {"general.jsonl": "doc", "domain.jsonl": "doc", "domain_core.jsonl": "doc", "sft_stage1.jsonl": "sft",
               "sft_stage2.jsonl": "sft", "expert_handwritten.jsonl": "handwritten"}
EVAL_FILES = {"soaes_general": {"zh_text.jsonl": "text", "en_text.jsonl": "text", "general_mc.jsonl": "mc",
                                "general_gen.jsonl": "gen"},
              "soaes_domain": {"domain_text.jsonl": "text", "domain_mc.jsonl": "mc", "domain_qa.jsonl": "gen",
                               "domain_knowledge.jsonl": "kgen", "domain_knowledge_mc.jsonl": "kmc"}}
SFT_SCHEMAS = ("sft", "handwritten")  # training files that can leak a knowledge item
CPT_SCHEMAS = ("doc",)                 # training files that are a knowledge item's source


# ---------------------------------------------------------------------------------------------- loading
@dataclass
class DataFile:
    path: Path
    schema: str
    ids: list = field(default_factory=list)
    segments: list[list[str]] = field(default_factory=list)  # per row: the text fields compared for overlap
    chars: int = 0
    knowledge: list[tuple[str, str, str, str]] = field(default_factory=list)  # kgen/kmc: (q, answer, evidence, cite)

    @property
    def label(self) -> str:
        return _label(self.path)


def _label(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(path)


def load_file(path: str | Path, schema: str | None = None) -> DataFile:
    """Validate every row (UserError "FILE:LINE: field X: problem" on the first bad one); refuse empty files."""
    path = Path(path)
    data = DataFile(path, schema or "")
    seen: dict = {}
    for lineno, row in iter_jsonl(path):
        if not data.schema:
            data.schema = infer_schema(row)
        try:
            rid = row_id(row)
            segs = SCHEMAS[data.schema](row)
        except ValueError as e:
            raise UserError(f"{path}:{lineno}: {e}") from None
        if rid in seen:
            raise UserError(f"{path}:{lineno}: field id: duplicate id {rid!r} (first on line {seen[rid]})")
        seen[rid] = lineno
        data.ids.append(rid)
        data.segments.append(segs)
        if data.schema in KNOWLEDGE_SCHEMAS:
            data.knowledge.append((*knowledge_view(row), row["cite"]))
        data.chars += sum(len(s) for s in segs)
    if not data.ids:
        raise UserError(f"{path}: empty file (no rows)")
    return data


def default_files() -> tuple[dict[Path, str], dict[Path, str]]:
    """(training files, evaluation files) -> schema, as listed in DESIGN.md plus any other *.jsonl beside them."""
    tdir = paths.training_dir() / "data"
    train = {tdir / name: schema for name, schema in TRAIN_FILES.items()}
    evals: dict[Path, str] = {}
    try:
        root = paths.tasks_dir()
    except FileNotFoundError:
        root = paths.REPO_ROOT / "tasks"
    for suite, files in EVAL_FILES.items():
        evals.update({root / suite / "data" / name: schema for name, schema in files.items()})
        for extra in sorted((root / suite / "data").glob("*.jsonl")):
            evals.setdefault(extra, "")
    for extra in sorted(tdir.glob("*.jsonl")):
        train.setdefault(extra, "")
    return train, evals


# ---------------------------------------------------------------------------------------------- manifest
_SHA = re.compile(r"^[0-9a-f]{64}$")


def manifest_entries(obj: Any) -> dict[str, str]:
    """Every (relative path -> sha256) pair found anywhere in a manifest: {"a.jsonl": "<sha>"},
    {"a.jsonl": {"sha256": ...}} or [{"path": ..., "sha256": ...}], at any depth."""
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        p, s = obj.get("path"), obj.get("sha256")
        if isinstance(p, str) and isinstance(s, str) and _SHA.match(s.lower()):
            out[p] = s.lower()
        for k, v in obj.items():
            pathlike = isinstance(k, str) and ("/" in k or "." in k)
            if pathlike and isinstance(v, str) and _SHA.match(v.lower()):
                out[k] = v.lower()
            elif pathlike and isinstance(v, dict) and isinstance(v.get("sha256"), str) and _SHA.match(v["sha256"].lower()):
                out[k] = v["sha256"].lower()
            elif isinstance(v, (dict, list)):
                out.update(manifest_entries(v))
    elif isinstance(obj, list):
        for v in obj:
            out.update(manifest_entries(v))
    return out


def check_manifest(manifest: str | Path) -> dict:
    """Compare files against the build manifest; paths are tried relative to the manifest, training/ and the repo."""
    manifest = Path(manifest)
    entries = manifest_entries(read_json(manifest))
    bases = [manifest.parent, paths.training_dir(), paths.REPO_ROOT]
    ok, mismatched, missing = [], [], []
    for rel, sha in sorted(entries.items()):
        found = next((b / rel for b in bases if (b / rel).is_file()), None)
        if found is None:
            missing.append(rel)
        elif sha256_file(found) != sha:
            mismatched.append(rel)
        else:
            ok.append(rel)
    return {"path": _label(manifest), "entries": len(entries), "ok": len(ok), "mismatched": mismatched,
            "missing": missing}


# ---------------------------------------------------------------------------------------------- the check
def duplicate_stats(data: DataFile, unit_hashes: list[list[np.ndarray]] | None = None,
                    num_perm: int = NUM_PERM, seed: int = MINHASH_SEED) -> dict:
    """Exact (normalised-text hash) and near (MinHash >= 0.8 over 5-unit shingles) duplicate rates of one file.
    A rate is the fraction of rows that duplicate an earlier row: (rows - clusters) / rows."""
    if unit_hashes is None:
        unit_hashes = [[overlap.unit_hashes(t) for t in segs] for segs in data.segments]
    fps = [overlap.fingerprint(segs) for segs in unit_hashes]
    params = overlap.minhash_params(num_perm, seed)
    sigs = np.stack([overlap.minhash(overlap.shingles_from_units(segs, SHINGLE), params) for segs in unit_hashes])
    groups = overlap.near_duplicate_groups(sigs, fps, bands=BANDS, threshold=NEAR_DUP_JACCARD)
    n = len(fps)
    exact = n - len(set(fps))
    near = n - len(set(groups))
    examples = [[data.ids[j], data.ids[g]] for j, g in enumerate(groups) if g != j][:5]
    return {"exact_dups": exact, "exact_dup_rate": exact / n, "near_dups": near, "near_dup_rate": near / n,
            "near_dup_examples": examples}


_ARTICLE_START = re.compile(r"\n(?=第[零〇一二三四五六七八九十百千]+条(?:之[一二三四五六七八九十]+)? )")


def law_articles(docs: list[DataFile]) -> dict[tuple[str, str], tuple[str, str]]:
    """(law name, article_no) -> (article text, file label) of the law documents in doc files: a first line with
    the law's name, then one `第N条 <text>` line per article (text.law_document)."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for d in docs:
        for segs in d.segments:
            text = segs[0]
            title, _, body = text.partition("\n")
            if not body.startswith("第"):
                continue
            for part in _ARTICLE_START.split(body):
                no, _, art = part.partition(" ")
                out.setdefault((title.strip(), no), (art, d.label))
    return out


def knowledge_report(e: DataFile, sft: list[DataFile], cpt: list[DataFile], n: int = NGRAM,
                     min_coverage: float = MIN_COVERAGE, articles: dict | None = None) -> dict:
    """Knowledge source (the cited article is in a CPT file) and leaks (question/answer in an SFT file) of a
    knowledge eval file; see the module docstring."""
    articles = law_articles(cpt) if articles is None else articles
    per_file = {f.label: overlap.TextIndex((t for segs in f.segments for t in segs), n) for f in sft}
    union = overlap.TextIndex((t for f in sft for segs in f.segments for t in segs), n)
    sourced: dict[str, int] = {}
    unsourced, leaked, cov = [], [], []
    for rid, (q, a, evidence, cite) in zip(e.ids, e.knowledge):
        law, _, no = cite.rpartition(" ")
        art = articles.get((law, no))
        grams = overlap.build_index([overlap.ngram_hashes(evidence, n), overlap.ngram_hashes(q, n)])
        if art and overlap.contains(grams, overlap.ngram_hashes(art[0], n)).any():
            sourced[art[1]] = sourced.get(art[1], 0) + 1
        else:
            unsourced.append(rid)
        hit = union.leak(q, a, evidence, min_coverage)
        cov.append(hit[1] if hit else union.coverage(evidence))
        if hit:
            files = [label for label, idx in per_file.items() if idx.leak(q, a, evidence, min_coverage)]
            leaked.append({"id": rid, "reason": hit[0], "coverage": round(hit[1], 3),
                           "files": files or ["the SFT sets together"]})
    items = len(e.ids)
    return {"items": items, "source_items": items - len(unsourced), "source_rate": (items - len(unsourced)) / items,
            "source_files": sourced, "unsourced": unsourced[:10], "sft_files": list(per_file),
            "items_leaked": len(leaked), "leak_rate": len(leaked) / items, "leaked": leaked,
            "partial_rate": float(np.mean(np.array(cov) >= 0.5)), "max_sft_coverage": round(max(cov), 3)}


def check_data(train: dict[str | Path, str], evals: dict[str | Path, str], manifest: str | Path | None = None,
               max_leak: float = DEFAULT_MAX_LEAK, n: int = NGRAM, min_coverage: float = MIN_COVERAGE,
               templates: bool = True) -> dict:
    """The whole check on explicit files ({path: schema or ""}); returns the report (see format_table)."""
    missing = [str(p) for p in [*train, *evals] if not Path(p).is_file()]
    if missing:
        raise UserError(f"{', '.join(missing)}: file not found (run `soaes-bench data build` first)")
    tfiles = [load_file(p, s or None) for p, s in train.items()]
    efiles = [load_file(p, s or None) for p, s in evals.items()]
    report: dict[str, Any] = {
        "schema": "soaes-bench/data-check", "schema_version": 1,
        "settings": {"ngram": n, "max_leak": max_leak, "min_coverage": min_coverage,
                     "templates": f"n-grams in more than max({TEMPLATE_MIN}, {TEMPLATE_FRAC:.0%}) items" if templates else None,
                     "minhash": {"shingle": SHINGLE, "num_perm": NUM_PERM, "bands": BANDS,
                                 "threshold": NEAR_DUP_JACCARD, "seed": MINHASH_SEED}},
        "files": [], "contamination": [], "by_eval": {}, "manifest": None, "failures": []}
    units = {}  # unit hashes of every segment, computed once per file and shared by all measures
    for role, group in (("train", tfiles), ("eval", efiles)):
        for d in group:
            units[d.label] = [[overlap.unit_hashes(t) for t in segs] for segs in d.segments]
            report["files"].append({"path": d.label, "role": role, "schema": d.schema, "rows": len(d.ids),
                                    "chars": d.chars, **duplicate_stats(d, units[d.label])})

    indexes = {d.label: overlap.build_index(overlap.ngrams_from_units(u, n) for segs in units[d.label] for u in segs)
               for d in tfiles}
    union = overlap.build_index(indexes.values())
    sft_files = [t for t in tfiles if t.schema in SFT_SCHEMAS]
    cpt_files = [t for t in tfiles if t.schema in CPT_SCHEMAS]
    sft_union = overlap.build_index(indexes[t.label] for t in sft_files)
    articles = law_articles(cpt_files) if any(e.schema in KNOWLEDGE_SCHEMAS for e in efiles) else {}
    report["knowledge"] = {}
    keys = ("share_rate", "leak_rate", "partial_rate", "ngram_rate")
    for e in efiles:
        items = [[(overlap.ngrams_from_units(u, n), len(u)) for u in segs] for segs in units[e.label]]
        ignore = None
        if templates:
            limit = max(TEMPLATE_MIN, int(TEMPLATE_FRAC * len(items)))
            ignore = overlap.template_ngrams([np.concatenate([g for g, _ in it]) for it in items], limit)
        for t in tfiles:
            c = overlap.contamination(indexes[t.label], items, n, ignore, min_coverage)
            report["contamination"].append({"train": t.label, "eval": e.label, "items": len(items),
                                            "items_leaked": int(c["leaked"].sum()),
                                            **{k: float(c[k]) for k in keys}})
        knowledge = e.schema in KNOWLEDGE_SCHEMAS  # the CPT corpus is its knowledge source: SFT sets only
        c = overlap.contamination(sft_union if knowledge else union, items, n, ignore, min_coverage)
        worst = np.argsort(-c["coverage"], kind="stable")
        report["by_eval"][e.label] = {
            "against": "sft" if knowledge else "all", "items": len(items), "items_leaked": int(c["leaked"].sum()), "items_sharing": int(c["shares"].sum()),
            **{k: float(c[k]) for k in keys}, "ngram_total": c["ngram_total"],
            "templates_ignored": 0 if ignore is None else len(ignore),
            "leaked": [{"id": e.ids[i], "coverage": round(float(c["coverage"][i]), 3)} for i in worst[:10]
                       if c["leaked"][i]]}
        if c["leak_rate"] > max_leak:
            ids = [x["id"] for x in report["by_eval"][e.label]["leaked"][:5]]
            report["failures"].append(f"{e.label}: {c['leak_rate']:.1%} of items are >= {min_coverage:.0%} covered "
                                      f"by {'SFT' if knowledge else 'training'} {n}-grams (limit {max_leak:.1%}), "
                                      f"e.g. {ids}")
        if knowledge:
            k = report["knowledge"][e.label] = knowledge_report(e, sft_files, cpt_files, n, min_coverage, articles)
            for x in k["leaked"][:5]:
                report["failures"].append(f"{e.label}: item {x['id']} leaked: its {x['reason']} is in "
                                          f"{', '.join(x['files'])} (a knowledge item must not be in any SFT set)")
            if k["items_leaked"] > 5:
                report["failures"].append(f"{e.label}: {k['items_leaked'] - 5} more leaked items (see --json)")
    if manifest is not None and Path(manifest).is_file():
        m = report["manifest"] = check_manifest(manifest)
        if m["mismatched"] or m["missing"]:
            report["failures"].append(f"{m['path']}: {len(m['mismatched'])} file(s) differ from the build manifest "
                                      f"{m['mismatched'][:5]}, {len(m['missing'])} missing {m['missing'][:5]} "
                                      f"(rebuild with `soaes-bench data build`)")
    report["passed"] = not report["failures"]
    return report


def format_table(report: dict) -> str:
    """Readable plain-text report."""
    lines = [f"{'file':50} {'role':5} {'schema':11} {'rows':>7} {'chars':>11} {'exact dup':>9} {'near dup':>9}"]
    for f in report["files"]:
        lines.append(f"{f['path']:50} {f['role']:5} {f['schema']:11} {f['rows']:>7} {f['chars']:>11} "
                     f"{f['exact_dup_rate']:>9.2%} {f['near_dup_rate']:>9.2%}")
    st = report["settings"]
    lines += ["", f"contamination: leaked (>= {st['min_coverage']:.0%} covered by training {st['ngram']}-grams) / "
                  f"sharing at least one {st['ngram']}-gram, per training set"]
    trains = list(dict.fromkeys(c["train"] for c in report["contamination"]))
    lines.append(f"{'eval set':52}" + "".join(f"{Path(t).stem[:13]:>15}" for t in trains))
    cells = {(c["train"], c["eval"]): c for c in report["contamination"]}
    know = report.get("knowledge", {})
    for e in report["by_eval"]:
        lines.append(f"{e + (' *' if e in know else ''):52}" + "".join(
            f"{cells[t, e]['leak_rate']:>7.1%} /{cells[t, e]['share_rate']:>6.1%}" for t in trains))
    if know:
        lines.append("  * knowledge set: its overlap with the CPT (doc) files is its knowledge source, not a leak")
    lines += ["", "against all training data together (knowledge sets *: against the SFT sets only):",
              f"{'eval set':52}{'items':>6}{'leaked':>8}{'>=50%':>8}{'share':>8}{'13-gram':>9}  worst items"]
    for e, b in report["by_eval"].items():
        worst = ", ".join(f"{x['id']} ({x['coverage']:.0%})" for x in b["leaked"][:3])
        lines.append(f"{e + (' *' if e in know else ''):52}{b['items']:>6}{b['leak_rate']:>8.1%}{b['partial_rate']:>8.1%}"
                     f"{b['share_rate']:>8.1%}{b['ngram_rate']:>9.2%}  {worst}")
    if know:
        lines += ["", "knowledge sets: the cited article in the CPT corpus = knowledge source (intended); "
                      "question or answer in an SFT set = leak (fails)"]
        for e, k in know.items():
            src = ", ".join(Path(f).name for f in k["source_files"]) or "no CPT file"
            lines.append(f"{e}: knowledge source: {k['source_items']}/{k['items']} items' articles are in {src}"
                         + (f" (not found: {', '.join(map(str, k['unsourced'][:3]))})" if k["unsourced"] else ""))
            leaked = "".join(f", {x['id']} ({x['reason']} in {', '.join(Path(f).name for f in x['files'])})"
                             for x in k["leaked"][:3])
            lines.append(f"{'':4}leaked into SFT: {k['items_leaked']}/{k['items']}{leaked}; answer text >= 50% in SFT "
                         f"13-grams: {k['partial_rate']:.1%} (max {k['max_sft_coverage']:.0%})")
    m = report.get("manifest")
    if m:
        lines += ["", f"manifest {m['path']}: {m['ok']}/{m['entries']} match, {len(m['mismatched'])} differ "
                      f"{m['mismatched'][:5]}, {len(m['missing'])} missing {m['missing'][:5]}"]
    lines += ["", "PASSED" if report["passed"] else "FAILED:\n  " + "\n  ".join(report["failures"])]
    return "\n".join(lines)


def cli_check(args) -> int:
    train, evals = default_files()
    max_leak = DEFAULT_MAX_LEAK if getattr(args, "max_leak", None) is None else args.max_leak
    if not 0.0 <= max_leak <= 1.0:
        raise UserError(f"--max-leak: expected a fraction between 0 and 1, got {max_leak}")
    report = check_data(train, evals, manifest=paths.training_dir() / "data" / "MANIFEST.json", max_leak=max_leak)
    print(json.dumps(report, ensure_ascii=False) if getattr(args, "json", False) else format_table(report))
    if not report["passed"]:
        what = [f.split(":")[0] for f in report["failures"]]
        raise UserError(f"check failed for {', '.join(what)} (details above)", code=1)
    return 0
