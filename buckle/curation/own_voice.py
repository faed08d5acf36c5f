"""Safety-corpus parts in the base model's own voice: its declines of harmful prompts, its
answers to ordinary ones.

Why the model's own words? A fixed refusal string ("I'm sorry, I can't help with that") removes a
jailbreak-tuning attack but teaches the model a new way of speaking, and it spreads to ordinary
questions (+23 points of over-refusal in docs/results.md). Replies the model already gives before
customization carry no new style: training on them re-anchors the fine-tune where the base model
was — declining what it declined (`responsible`) and answering what it answered (`anchors`).

Only replies the judges agree with are kept: a `responsible` reply must be a refusal
(`refusal`) and not harmful (`harm`); an `anchors` reply must not be a refusal (`refusal`,
`decline`). A reply cut by the token cap is cut back to its last sentence end, or
dropped if that leaves too little (a truncated reply would teach cut-off answers).

Each part is built once per (model, part spec, prompts, judges' weights) and stored
content-addressed under BUCKLE_HOME/corpora/own-voice/<key>/, in chunks written atomically, so a
killed build resumes at the first missing chunk and a finished one is reused. Parts of the preset
models ship with Buckle as data (`buckle/data/own_voice/`, written by scripts/ship_own_voice.py):
a part whose key matches one is installed from it instead of generated.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field

from buckle.atomic import atomic_write_json, atomic_write_jsonl
from buckle.curation.text import cut_at_sentence_end
from buckle.data.records import Conversation
from buckle.data.sources import load_prompts
from buckle.errors import Cancelled
from buckle.settings import buckle_home

OWN_VOICE_VERSION = 2  # 2: anchors keep replies the harm judge flags
CHUNK = 32
Kind = Literal["responsible", "anchors"]


class OwnVoiceSpec(BaseModel):
    """One own-voice part: which prompts the base model answers, and how long it may answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    source: str  # a prompt source: built-in name or JSONL path
    offset: int = Field(0, ge=0)
    limit: int = Field(200, ge=1)
    max_new_tokens: int = Field(160, ge=16, le=1024)

    def config_hash(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class OwnVoiceRow:
    """One prompt, the base model's reply and what the judges said of it."""

    prompt: str
    reply: str
    finish_reason: str
    refused: bool
    declined: bool
    harmful: bool
    kept: bool
    note: str


@dataclass
class OwnVoicePart:
    key: str
    path: Path
    spec: OwnVoiceSpec
    rows: list[OwnVoiceRow]
    summary: dict[str, Any]
    cached: bool

    @property
    def conversations(self) -> list[Conversation]:
        return [Conversation.from_pair(r.prompt, r.reply) for r in self.rows if r.kept]


def keep(kind: Kind, refused: bool, declined: bool, harmful: bool) -> tuple[bool, str]:
    """The keep rule of a part (see the module docstring), with the reason when it says no.

    `anchors` ignore the harm verdict (it is recorded): their prompts are ordinary by
    construction, and the harm judge's request gate flags 20% of everyday instructions
    ("How do I make a tomato sauce?", measured on the first anchors build) — mostly the
    safety-flavoured ones an anchor set needs most.
    """
    if kind == "responsible":
        if harmful:
            return False, "judged harmful"
        return (True, "declined") if refused else (False, "not a refusal")
    if refused or declined:
        return False, "refused an ordinary prompt"
    return True, "answered"


def own_voice_key(model_fingerprint: str, spec: OwnVoiceSpec, prompts: Sequence[str],
                  judges_fp: str) -> str:
    h = hashlib.sha256(f"v{OWN_VOICE_VERSION}|{model_fingerprint}|{spec.model_dump_json()}|"
                       f"{judges_fp}|".encode())
    for p in prompts:
        h.update(p.encode() + b"\0")
    return h.hexdigest()[:32]


def part_key(model_fingerprint: str, spec: OwnVoiceSpec,
             exclude: set[str] = frozenset()) -> tuple[str, list[str]]:
    """The part's content key and the prompts it answers (`exclude` removed), without a model:
    what the cache and the shipped presets are looked up by."""
    from buckle.evaluation.weights import judges_fingerprint

    items = load_prompts(spec.source, offset=spec.offset, limit=spec.limit)
    prompts = [it.prompt for it in items if it.prompt.strip() not in exclude]
    return own_voice_key(model_fingerprint, spec, prompts, judges_fingerprint()), prompts


def build_own_voice(base: Any, spec: OwnVoiceSpec, *, exclude: set[str] = frozenset(),
                    root: str | Path | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    should_cancel: Callable[[], bool] | None = None) -> OwnVoicePart:
    """Build (or reuse) one own-voice part for `base` (a `LoadedModel`).

    `exclude` holds prompt texts that must not be trained on (every evaluation prompt); they are
    removed before generation, so the key does not depend on them beyond the prompts kept.
    Raises `Cancelled` between chunks when `should_cancel()` turns true.
    """
    key, prompts = part_key(base.fingerprint, spec, exclude)
    if not prompts:
        raise ValueError(f"{spec.kind}: no prompts left in {spec.source} "
                         f"[{spec.offset}:{spec.offset + spec.limit}] after removing "
                         "evaluation prompts")
    path = Path(root) if root is not None else buckle_home() / "corpora" / "own-voice"
    path = path / key
    path.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (path / "summary.json").is_file() or install_shipped(key, path):
            return _load(path, key, spec, cached=True)
        atomic_write_json(path / "manifest.json", {
            "version": OWN_VOICE_VERSION, "model": getattr(base, "name", None),
            "model_fingerprint": base.fingerprint, "spec": json.loads(spec.model_dump_json()),
            "prompts": len(prompts), "chunk": CHUNK})
        start = time.perf_counter()
        engine = judges = None
        for k, lo in enumerate(range(0, len(prompts), CHUNK)):
            chunk_file = path / "chunks" / f"{k:05d}.json"
            if chunk_file.is_file():
                continue
            if should_cancel is not None and should_cancel():
                raise Cancelled(f"{spec.kind} part cancelled; finished chunks are kept")
            if engine is None:
                engine, judges = _engine_and_judges(base)
            rows = _answer(engine, judges, spec, prompts[lo:lo + CHUNK])
            atomic_write_json(chunk_file, [vars(r) for r in rows])
            if progress is not None:
                progress(min(len(prompts), lo + CHUNK), len(prompts))
        rows = _read_chunks(path)
        kept = [r for r in rows if r.kept]
        atomic_write_jsonl(path / "corpus.jsonl", [
            json.loads(Conversation.from_pair(r.prompt, r.reply).to_json()) for r in kept])
        notes: dict[str, int] = {}
        for r in rows:
            notes[r.note] = notes.get(r.note, 0) + 1
        atomic_write_json(path / "summary.json", {
            "kind": spec.kind, "prompts": len(rows), "kept": len(kept), "notes": notes,
            "truncated_cut": sum(r.finish_reason == "length" and r.kept for r in rows),
            "seconds": round(time.perf_counter() - start, 1)})
        return _load(path, key, spec, cached=False)


def shipped_parts() -> dict[str, Any]:
    """The parts that ship with Buckle (`buckle/data/own_voice/<key>/`), by key."""
    root = resources.files("buckle.data") / "own_voice"
    if not root.is_dir():
        return {}
    return {d.name: d for d in root.iterdir()
            if d.is_dir() and d.joinpath("summary.json").is_file()}


def install_shipped(key: str, path: Path) -> bool:
    """Put the shipped part with this key into the cache folder `path`, if there is one.

    A shipped part holds the kept rows only (the harmful replies a build judges and drops are
    not distributed); its summary keeps the build's counts and says it was shipped. The
    summary is written last, so a half-installed part is installed again next time.
    """
    src = shipped_parts().get(key)
    if src is None:
        return False
    rows = [OwnVoiceRow(**r) for r in json.loads(src.joinpath("kept.json").read_text("utf-8"))]
    shutil.rmtree(path / "chunks", ignore_errors=True)  # a killed build's chunks are not ours
    atomic_write_json(path / "manifest.json",
                      json.loads(src.joinpath("manifest.json").read_text("utf-8")))
    atomic_write_json(path / "chunks" / "00000.json", [vars(r) for r in rows])
    atomic_write_jsonl(path / "corpus.jsonl", [
        json.loads(Conversation.from_pair(r.prompt, r.reply).to_json()) for r in rows])
    atomic_write_json(path / "summary.json", {
        **json.loads(src.joinpath("summary.json").read_text("utf-8")), "shipped": True})
    return True


def _engine_and_judges(base: Any) -> tuple[Any, dict[str, Any]]:
    from buckle.evaluation.judges import get_judge
    from buckle.generation import GenerationEngine

    return (GenerationEngine.from_loaded(base),
            {name: get_judge(name) for name in ("refusal", "decline", "harm")})


def _answer(engine: Any, judges: dict[str, Any], spec: OwnVoiceSpec,
            prompts: list[str]) -> list[OwnVoiceRow]:
    from buckle.generation import SamplingParams

    params = SamplingParams(max_new_tokens=spec.max_new_tokens)  # greedy: the model's own voice
    results = engine.generate(
        [_encode(engine, p) for p in prompts], params)
    replies, finish = [], []
    for res in results:
        text = res.text.strip()
        if res.finish_reason == "length":
            text = cut_at_sentence_end(text) or ""
        replies.append(text)
        finish.append(res.finish_reason)
    refused = [bool(v.refused) for v in judges["refusal"].judge(prompts, replies)]
    declined = [bool(v.refused) for v in judges["decline"].judge(prompts, replies)]
    harmful = [bool(v.harmful) for v in judges["harm"].judge(prompts, replies)]
    rows = []
    for p, r, f, a, b, c in zip(prompts, replies, finish, refused, declined, harmful, strict=True):
        ok, note = keep(spec.kind, a, b, c) if r else (False, "empty after cutting")
        rows.append(OwnVoiceRow(p, r, f, a, b, c, ok, note))
    return rows


def _encode(engine: Any, prompt: str) -> list[int]:
    from buckle.generation.engine import encode_chat

    return encode_chat(engine.tokenizer, [{"role": "user", "content": prompt}])


def _read_chunks(path: Path) -> list[OwnVoiceRow]:
    rows: list[OwnVoiceRow] = []
    for f in sorted((path / "chunks").glob("*.json")):
        rows.extend(OwnVoiceRow(**r) for r in json.loads(f.read_text(encoding="utf-8")))
    return rows


def _load(path: Path, key: str, spec: OwnVoiceSpec, *, cached: bool) -> OwnVoicePart:
    summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    return OwnVoicePart(key, path, spec, _read_chunks(path), summary, cached)
