"""The safety data a policy trains on, built from named parts and never overlapping evaluation.

Safety corpus v2 is the union of the parts a job names (`SafetySpec.parts`), each built once per
base model and cached content-addressed, each switchable off for ablation:
  ctrl         CTRL revisions of `curation.source` (`buckle.curation.curate_source`);
  responsible  the base model's own declines of harmful prompts (`own_voice`, kind responsible);
  anchors      the base model's own answers to ordinary prompts (`own_voice`, kind anchors).
The `uncurated` control uses the ctrl part's items before revision; `refusal-mix` uses fixed
refusal texts (`policies.refusal_pairs`). Every evaluation prompt is removed from every part.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from buckle.curation import CurationConfig, curate_source
from buckle.curation.own_voice import OwnVoiceSpec, build_own_voice
from buckle.data.records import Conversation
from buckle.data.sources import load_conversations, load_prompts
from buckle.data.validation import load_conversations_jsonl
from buckle.pipeline.policies import SafetyPolicy, refusal_pairs
from buckle.pipeline.spec import ANCHORS_SOURCE, JobSpec

EVERYDAY = "everyday"  # what CTRL revises when `curation.source` is "anchors"
# A base model that declines fewer of the `responsible` prompts than this (SmolLM2 declines
# none) has no own voice to decline in: the prompts it did not decline get Buckle's written
# declines (`policies.refusal_pairs`) instead, and the part says so (`voice: "written"`).
# A handful of own declines would just repeat through every safety stage.
MIN_OWN_DECLINES = 8


class Events(Protocol):
    """What the builders need of the pipeline's event sink."""

    def __call__(self, event: Any, message: str, within: float = 0.0,
                 phase: str | None = None, **data: Any) -> None: ...

    @property
    def should_cancel(self) -> Any: ...


def safety_data(policy: SafetyPolicy, spec: JobSpec, base: Any, held_out: set[str],
                events: Events) -> tuple[list[Conversation], dict[str, Any]]:
    """The policy's safety items, with every evaluation prompt removed (held-out sets)."""
    s = spec.safety
    if policy.safety_data == "none":
        return [], {}
    if policy.safety_data == "refusal":
        prompts = [p.prompt for p in load_prompts(s.refusal_prompts, offset=s.refusal_offset)]
        items = refusal_pairs([p for p in prompts if p.strip() not in held_out])
        events("curate", f"{len(items)} refusal pairs from {s.refusal_prompts}", 1.0,
               source=s.refusal_prompts, items=len(items))
        return items, {"kind": "refusal", "source": s.refusal_prompts, "items": len(items)}
    if s.curated_file:
        items = load_conversations_jsonl(s.curated_file)
        info: dict[str, Any] = {"kind": "file", "path": s.curated_file}
    elif policy.safety_data == "uncurated":
        items, info = _ctrl_part(spec, base, events, held_out, curated=False)
    else:
        items, parts = [], {}
        for k, name in enumerate(s.parts):
            part_events = _PartEvents(events, k, len(s.parts))
            part_items, part_info = _PARTS[name](spec, base, part_events, held_out)
            kept = [c for c in part_items if c.prompt.strip() not in held_out]
            items += kept
            parts[name] = {**part_info, "items": len(kept)}
        info = {"kind": "curated", "parts": parts}
        if list(parts) == ["ctrl"]:  # the v1 layout, which reports and the service read
            info.update(parts["ctrl"])
    kept = [c for c in items if c.prompt.strip() not in held_out]
    info.update(items=len(kept), dropped_overlapping_eval=len(items) - len(kept))
    if not kept:
        raise ValueError("every safety item overlaps the evaluation prompts; choose another "
                         "curation source or offset")
    return kept, info


class _PartEvents:
    """Part k of n owns the k-th slice of the curate phase, so progress never runs backwards."""

    def __init__(self, events: Events, k: int, n: int) -> None:
        self._events, self._k, self._n = events, k, n

    def __call__(self, event: Any, message: str, within: float = 0.0,
                 phase: str | None = None, **data: Any) -> None:
        self._events(event, message, (self._k + within) / self._n, phase, **data)

    @property
    def should_cancel(self) -> Any:
        return self._events.should_cancel


def _ctrl_part(spec: JobSpec, base: Any, events: Events, held_out: set[str],
               curated: bool = True) -> tuple[list[Conversation], dict[str, Any]]:
    c = spec.safety.curation
    config = CurationConfig.preset(c.preset, **{"seed": spec.seed, **c.overrides})
    source = c.source
    if source == ANCHORS_SOURCE:  # revise the base model's own answers to `everyday`
        own = OwnVoiceSpec(kind="anchors", source=EVERYDAY, offset=0, limit=10_000,
                           max_new_tokens=spec.safety.anchors.max_new_tokens)
        answers = build_own_voice(base, own, exclude=held_out,
                                  should_cancel=events.should_cancel,
                                  progress=lambda done, total: events(
                                      "curate", f"everyday answers: {done}/{total}",
                                      done / max(1, 2 * total)))
        source = str(answers.path / "corpus.jsonl")
        events = _PartEvents(events, 1, 2)
    events("curate", f"curating {c.limit} items of {c.source} ({c.preset} grid)")

    def on_progress(p: Any) -> None:
        events("curate", f"curated {p.items_done}/{p.items_total} items",
               p.items_done / max(1, p.items_total), items_done=p.items_done,
               candidates=p.candidates)

    corpus = curate_source(base, source, config, limit=c.limit, offset=c.offset,
                           skip_invalid=True, progress=on_progress,
                           should_cancel=events.should_cancel)
    # With a safety floor (the v2 preset) an item none of whose revisions carried a safety
    # implication is left out, and the uncurated control takes the same items (equal count).
    chosen = [it for it in corpus.items if it.revised or config.min_safety == 0]
    items = [it.curated if curated else it.original for it in chosen]
    events("curate", f"corpus {corpus.key} ready ({'reused' if corpus.cached else 'built'})",
           1.0, config_hash=config.config_hash(), source=c.source, path=str(corpus.path),
           items=len(items), config=json.loads(config.to_json()), cached=corpus.cached)
    return items, {"kind": "curated" if curated else "uncurated", "key": corpus.key,
                   "path": str(corpus.path), "config_hash": config.config_hash(),
                   "source": c.source, "cached": corpus.cached, "summary": corpus.summary}


def _own_voice_part(kind: str):
    def build(spec: JobSpec, base: Any, events: Events,
              held_out: set[str]) -> tuple[list[Conversation], dict[str, Any]]:
        src = getattr(spec.safety, kind)
        part_spec = OwnVoiceSpec(kind=kind, **src.model_dump())
        events("curate", f"{kind}: the base model answers {src.limit} prompts of {src.source}")

        def on_progress(done: int, total: int) -> None:
            events("curate", f"{kind}: {done}/{total} prompts answered", done / max(1, total),
                   part=kind, items_done=done)

        part = build_own_voice(base, part_spec, exclude=held_out, progress=on_progress,
                               should_cancel=events.should_cancel)
        origin = "shipped with Buckle" if part.summary.get("shipped") else \
            "reused" if part.cached else "built"
        items, voice = part.conversations, "own"
        if kind == "responsible" and len(items) < MIN_OWN_DECLINES:
            items, voice = _with_written_declines(part), "written"
        events("curate", f"{kind} part {part.key} ready ({origin})"
               f": kept {part.summary['kept']} of {part.summary['prompts']}"
               + (f"; too few own declines, {len(items) - part.summary['kept']} written "
                  "declines added" if voice == "written" else ""), 1.0, part=kind,
               path=str(part.path), cached=part.cached, items=len(items), voice=voice,
               source=src.source, config_hash=part.key,  # the service's corpus registry
               config={"part": kind, **src.model_dump()})
        return items, {"kind": kind, "key": part.key, "path": str(part.path),
                       "source": src.source, "cached": part.cached, "voice": voice,
                       "own_items": part.summary["kept"], "summary": part.summary}
    return build


def _with_written_declines(part: Any) -> list[Conversation]:
    """The part's own declines, then a written decline for every prompt it did not decline
    (in prompt order, so the texts rotate the same way on every build)."""
    own = part.conversations
    others = [r.prompt for r in part.rows if not r.kept]
    return own + refusal_pairs(others)


_PARTS = {
    "ctrl": _ctrl_part,
    "responsible": _own_voice_part("responsible"),
    "anchors": _own_voice_part("anchors"),
}


def harmful_pairs(spec: JobSpec, held_out: set[str]) -> list[Conversation]:
    """Booster's harmful (prompt, answer) pairs (`SafetySpec.immunize`), answers cut to their
    first `reply_words` words, evaluation prompts removed. Never trained on directly."""
    im = spec.safety.immunize
    return _side_pairs("harmful", im.harmful_source, im.harmful_offset, im.harmful_limit,
                       im.reply_words, held_out)


def benign_pairs(spec: JobSpec, held_out: set[str]) -> list[Conversation]:
    """The plasticity term's benign (prompt, answer) pairs (`SafetySpec.immunize`), cut and
    filtered as Booster's harmful ones. The term's gradient is the benign loss's at the
    look-ahead point, so the adapter does fit these answers (their style shows in its replies):
    keep them disjoint from every evaluation set, as the default chatterbot 200-399 are."""
    im = spec.safety.immunize
    return _side_pairs("benign", im.benign_source, im.benign_offset, im.benign_limit,
                       im.reply_words, held_out)


def _side_pairs(kind: str, source: str, offset: int, limit: int, words: int,
                held_out: set[str]) -> list[Conversation]:
    rows = load_conversations(source, offset=offset, limit=limit)
    pairs = [c.with_reply_cut(words) for c in rows if c.prompt.strip() not in held_out]
    if not pairs:
        raise ValueError(f"immunize: no {kind} pairs left in {source} (offset {offset}, "
                         f"limit {limit}) after removing evaluation prompts")
    return pairs


def decline_negatives(safety: Sequence[Conversation],
                      info: dict[str, Any]) -> list[Conversation]:
    """The unlikelihood term's pairs (`SafetySpec.unlikelihood`): each `anchors` prompt with
    the model's own decline, the `responsible` part's most common reply (for
    qwen2.5-coder-0.5b-instruct all 83 are "I'm sorry, but I can't assist with that.").
    `safety` is the corpus in part order, `info` what `safety_data` reported about it."""
    parts = info.get("parts") or {}
    if not {"responsible", "anchors"} <= set(parts):
        raise ValueError("safety.unlikelihood needs the corpus parts 'responsible' (the decline "
                         f"to avoid) and 'anchors' (where to avoid it); the job has {list(parts)}")
    spans, start = {}, 0
    for name, part in parts.items():
        spans[name] = safety[start:start + part["items"]]
        start += part["items"]
    if not spans["responsible"] or not spans["anchors"]:
        raise ValueError("safety.unlikelihood: the 'responsible' or 'anchors' part kept no items "
                         "after removing evaluation prompts; widen its source window")
    decline = Counter(c.response for c in spans["responsible"]).most_common(1)[0][0]
    return [Conversation.from_pair(c.prompt, decline) for c in spans["anchors"]]
