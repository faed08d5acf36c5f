"""Curated corpora as assets: content-addressed, cached under BUCKLE_HOME, resumable.

A corpus is identified by (target model fingerprint, reviser fingerprint, source fingerprint,
config hash); its directory `BUCKLE_HOME/corpora/<key>/` holds

    manifest.json         what was asked (model, source, config, chunking) — written first
    chunks/00000.json     finished chunks of items, each written atomically
    corpus.jsonl          the curated conversations (OpenAI chat JSONL)
    provenance.jsonl      one line per item: original, chosen text, round, T, top-p, scores
    summary.json          written last: its presence means "complete"

Why chunks: a killed run (kill -9, a lost Celery worker) restarts at the first missing chunk and
never redoes a finished one; because sampling seeds depend only on item coordinates and chunk
boundaries are fixed by the manifest, the resumed corpus is the one an uninterrupted run gives.
A file lock per corpus makes concurrent requests for the same corpus wait for one builder and
then read its result, so many workers sharing a BUCKLE_HOME curate each corpus once.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from filelock import FileLock

from buckle.atomic import atomic_write_json, atomic_write_jsonl, atomic_write_text
from buckle.curation.config import CurationConfig
from buckle.curation.search import BeamSearch, CuratedItem
from buckle.data.records import Conversation
from buckle.data.sources import read_conversations
from buckle.errors import BuckleError, Cancelled, LineIssue
from buckle.generation.engine import GenerationEngine
from buckle.generation.sampling import SAMPLER_VERSION
from buckle.settings import buckle_home

LAYOUT_VERSION = 2  # 2: echoes include 3 content words of the instructions
DEFAULT_CHUNK_SIZE = 8


@dataclass(frozen=True)
class CurationProgress:
    items_done: int
    items_total: int
    candidates: int  # revisions sampled so far in this process
    elapsed_s: float
    round: int | None = None  # the round just finished inside the current chunk


@dataclass
class CuratedCorpus:
    """A finished corpus on disk. `cached` says whether this call found it already built."""

    key: str
    path: Path
    items: list[CuratedItem]
    summary: dict[str, Any]
    cached: bool
    skipped: list[LineIssue]

    @property
    def conversations(self) -> list[Conversation]:
        return [item.curated for item in self.items]

    @property
    def corpus_file(self) -> Path:
        return self.path / "corpus.jsonl"

    @property
    def provenance_file(self) -> Path:
        return self.path / "provenance.jsonl"

    def export(self, out: str | Path) -> tuple[Path, Path]:
        """Copy the corpus to `out` and its provenance next to it (`<out stem>.provenance.jsonl`)."""
        out = Path(out)
        prov = out.with_name(f"{out.stem}.provenance.jsonl")
        atomic_write_text(out, self.corpus_file.read_text(encoding="utf-8"))
        atomic_write_text(prov, self.provenance_file.read_text(encoding="utf-8"))
        return out, prov


class CorpusMismatchError(BuckleError):
    """A corpus directory's manifest disagrees with the request that maps to it."""


def source_fingerprint(items: Sequence[Conversation]) -> str:
    """sha256 of the items' canonical JSON: the corpus is addressed by content, not by name."""
    h = hashlib.sha256()
    for item in items:
        h.update(item.to_json().encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def corpus_key(model_fingerprint: str, reviser_fingerprint: str, source_fp: str,
               config_hash: str) -> str:
    text = (f"v{LAYOUT_VERSION}|s{SAMPLER_VERSION}|{model_fingerprint}|{reviser_fingerprint}|"
            f"{source_fp}|{config_hash}")
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def corpora_root() -> Path:
    return buckle_home() / "corpora"


def curate(
    target: Any,
    items: Sequence[Conversation],
    config: CurationConfig,
    *,
    lines: Sequence[int] | None = None,
    source: str = "items",
    reviser: Any = None,
    root: str | Path | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[CurationProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    skipped: Sequence[LineIssue] = (),
) -> CuratedCorpus:
    """Curate `items` for `target` (a `LoadedModel`), or return the stored corpus if it exists.

    `reviser` (a `LoadedModel`) writes revisions; None = the target itself. Raises `Cancelled`
    if `should_cancel()` turns true; finished chunks stay on disk and the next call resumes.
    """
    if not items:
        raise ValueError("nothing to curate: the source window is empty")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    lines = list(lines) if lines is not None else list(range(1, len(items) + 1))
    reviser = reviser or target
    key = corpus_key(target.fingerprint, reviser.fingerprint, source_fingerprint(items),
                     config.config_hash())
    path = Path(root) if root is not None else corpora_root()
    path = path / key
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (path / "summary.json").is_file():
            return _load(path, key, cached=True, skipped=skipped)
        manifest = _manifest(target, reviser, source, items, lines, config, chunk_size, skipped)
        chunk_size = _open_manifest(path, manifest)
        done = _build(path, target, reviser, items, lines, config, chunk_size, progress,
                      should_cancel)
        _finish(path, done, manifest)
        return _load(path, key, cached=False, skipped=skipped)


def curate_source(
    target: Any,
    source: str,
    config: CurationConfig,
    *,
    limit: int | None = None,
    offset: int = 0,
    skip_invalid: bool = False,
    **kwargs: Any,
) -> CuratedCorpus:
    """The one entry point for the CLI, the pipeline and workers: read a source, curate it.

    Bad rows of a file source are a `DatasetFormatError` listing their line numbers, unless
    `skip_invalid`, which leaves them out and records them in the manifest and summary.
    """
    rows = read_conversations(source, limit=limit, offset=offset, skip_invalid=skip_invalid)
    return curate(target, rows.conversations, config, lines=rows.lines, source=source,
                  skipped=rows.skipped, **kwargs)


# ---------------------------------------------------------------------- internals
def _manifest(target: Any, reviser: Any, source: str, items: Sequence[Conversation],
              lines: list[int], config: CurationConfig, chunk_size: int,
              skipped: Sequence[LineIssue]) -> dict[str, Any]:
    return {
        "layout_version": LAYOUT_VERSION, "sampler_version": SAMPLER_VERSION,
        "model": target.name, "model_fingerprint": target.fingerprint,
        "reviser": reviser.name, "reviser_fingerprint": reviser.fingerprint,
        "source": source, "source_fingerprint": source_fingerprint(items),
        "items": len(items), "lines": lines,
        "skipped": [{"line": i.line, "reason": i.reason} for i in skipped],
        "config": json.loads(config.to_json()), "config_hash": config.config_hash(),
        "chunk_size": chunk_size,
    }


def _open_manifest(path: Path, manifest: dict[str, Any]) -> int:
    """Start a corpus, or check that an unfinished one is the same request; return its chunking.

    The chunk size of an interrupted run wins, so the resumed corpus matches it exactly.
    """
    file = path / "manifest.json"
    if file.is_file():
        old = json.loads(file.read_text(encoding="utf-8"))
        for k in ("model_fingerprint", "reviser_fingerprint", "source_fingerprint",
                  "config_hash", "items"):
            if old.get(k) != manifest[k]:
                raise CorpusMismatchError(
                    f"{path}: stored manifest has {k}={old.get(k)!r}, request has "
                    f"{manifest[k]!r}; delete the directory to rebuild it")
        return int(old["chunk_size"])
    (path / "chunks").mkdir(parents=True, exist_ok=True)
    atomic_write_json(file, manifest)
    return int(manifest["chunk_size"])


def _chunk_file(path: Path, k: int) -> Path:
    return path / "chunks" / f"{k:05d}.json"


def _build(path: Path, target: Any, reviser: Any, items: Sequence[Conversation],
           lines: list[int], config: CurationConfig, chunk_size: int,
           progress: Callable[[CurationProgress], None] | None,
           should_cancel: Callable[[], bool] | None) -> list[tuple[list[CuratedItem], float]]:
    n_chunks = math.ceil(len(items) / chunk_size)
    done: list[tuple[list[CuratedItem], float] | None] = [None] * n_chunks
    for k in range(n_chunks):
        file = _chunk_file(path, k)
        if file.is_file():
            data = json.loads(file.read_text(encoding="utf-8"))
            done[k] = ([CuratedItem.from_dict(d) for d in data["items"]], data["seconds"])
    finished = sum(len(d[0]) for d in done if d is not None)
    if finished == len(items):
        return done  # type: ignore[return-value]
    engine = GenerationEngine.from_loaded(reviser)
    search = BeamSearch(config, target_model=target.model, target_tokenizer=target.tokenizer,
                        reviser=engine)
    start, candidates = time.perf_counter(), 0

    def report(round_: int | None, sampled: int) -> None:
        nonlocal candidates
        candidates += sampled
        if progress is not None:
            progress(CurationProgress(finished, len(items), candidates,
                                      time.perf_counter() - start, round_))

    report(None, 0)
    for k in range(n_chunks):
        if done[k] is not None:
            continue
        lo, hi = k * chunk_size, min(len(items), (k + 1) * chunk_size)
        t0 = time.perf_counter()
        result = search.run(items[lo:hi], list(range(lo, hi)), lines[lo:hi],
                            on_round=lambda r, n: report(r, n), should_stop=should_cancel)
        if result is None:
            raise Cancelled(f"curation cancelled after {finished} of {len(items)} items; "
                            "finished chunks are kept and the next run resumes from them")
        seconds = time.perf_counter() - t0
        atomic_write_json(_chunk_file(path, k), {"items": [r.to_dict() for r in result],
                                                 "seconds": seconds}, indent=None)
        done[k] = (result, seconds)
        finished += len(result)
        report(None, 0)
    return done  # type: ignore[return-value]


def summarize(items: Sequence[CuratedItem], seconds: float) -> dict[str, Any]:
    """The numbers a reviewer asks first: did the text change, and in which direction?"""
    n = len(items)
    before = [i.original_scores for i in items]
    after = [i.chosen.scores for i in items]
    return {
        "items": n,
        "revised": sum(i.revised for i in items),
        "revised_share": sum(i.revised for i in items) / n,
        "mean_perplexity_before": fmean(s.perplexity for s in before),
        "mean_perplexity_after": fmean(s.perplexity for s in after),
        "mean_safety_before": fmean(s.safety for s in before),
        "mean_safety_after": fmean(s.safety for s in after),
        "safety_cue_share_before": sum(s.safety > 0 for s in before) / n,
        "safety_cue_share_after": sum(s.safety > 0 for s in after) / n,
        "mean_helpfulness_before": fmean(s.helpfulness for s in before),
        "mean_helpfulness_after": fmean(s.helpfulness for s in after),
        "mean_readability_before": fmean(s.readability for s in before),
        "mean_readability_after": fmean(s.readability for s in after),
        "candidates_sampled": sum(r.sampled for i in items for r in i.rounds),
        "candidates_scored": sum(r.scored for i in items for r in i.rounds),
        "candidates_echoing_prompt": sum(r.echoes for i in items for r in i.rounds),
        "seconds": seconds,
        "items_per_s": n / seconds if seconds > 0 else None,
    }


def _finish(path: Path, done: list[tuple[list[CuratedItem], float]],
            manifest: dict[str, Any]) -> None:
    items = [item for chunk, _ in done for item in chunk]
    seconds = sum(s for _, s in done)
    atomic_write_text(path / "corpus.jsonl", "".join(i.curated.to_json() + "\n" for i in items))
    atomic_write_jsonl(path / "provenance.jsonl", [i.to_dict() for i in items])
    summary = {**summarize(items, seconds),
               **{k: manifest[k] for k in ("model", "reviser", "source", "config_hash",
                                           "skipped")},
               "objective": manifest["config"]["objective"]}
    atomic_write_json(path / "summary.json", summary)  # last: marks the corpus complete


def _load(path: Path, key: str, *, cached: bool, skipped: Sequence[LineIssue]) -> CuratedCorpus:
    summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    with open(path / "provenance.jsonl", encoding="utf-8") as f:
        items = [CuratedItem.from_dict(json.loads(line)) for line in f if line.strip()]
    return CuratedCorpus(key=key, path=path, items=items, summary=summary, cached=cached,
                         skipped=list(skipped))


def remove_corpus(path: str | Path) -> None:
    """Delete a stored corpus (e.g. to force a rebuild)."""
    shutil.rmtree(path, ignore_errors=True)
