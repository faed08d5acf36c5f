"""CTRL's beam search over sampled revisions, for a batch of items at once.

Per round, every beam member of every item is sent to the reviser once per (temperature, top_p)
grid point; all those requests go to the engine together, so identical prompts (one member x 25
grid points) are prefilled once and decoded in large batches. New texts are cleaned, dropped if
truncated or if they echo the revision prompt, deduplicated per item, scored by the text
scorers and filtered by the quality floors; only the survivors get a perplexity under the
*target* model (in length-sorted batches): the floors never look at perplexity, so a forward
pass for a rejected candidate could not change any outcome (on the paper grid ~80% of distinct
candidates miss a floor). The top `beam` survivors by the objective key become the next round's
members. The original is never a survivor: if no revision passes the
floors the item keeps its original response and says so.

Sampling seeds derive from (config seed, item index, round, member, grid point) only, so an
item's result does not depend on which other items share its batch, and a resumed run redoes
exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import hashlib
import math
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from buckle.curation.config import CurationConfig
from buckle.curation.objective import QualityScorers, Scores, floor_failures, objective_key
from buckle.curation.perplexity import response_perplexities
from buckle.curation.scorers import STOPWORDS
from buckle.curation.text import cut_at_sentence_end
from buckle.data.records import Conversation, Message
from buckle.generation.engine import GenerationEngine, encode_chat
from buckle.generation.sampling import SamplingParams

KEPT_ORIGINAL = "no revision passed the quality floors; original kept"
# A label line of the revision template ("Question:", "Answer:"): how echoes start.
_LABEL = re.compile(r"([A-Za-z][A-Za-z ]{0,30}:)\s*$")
ECHO_SHINGLE = 8  # words of the template's instructions in a row that count as an echo
PHRASE_WORDS = 3  # content words of the instructions in a row that count as an echo
# Preambles small models put before the text they were asked for ("Rewritten response:", ...).
_PREAMBLE = re.compile(
    r"^\s*(?:(?:here(?:'s| is) (?:the |a |my )?)?(?:rewritten|revised|updated|improved|"
    r"safety-conscious)?\s*(?:response|answer|version)\s*(?:is)?\s*:)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Candidate:
    """One response text with where it came from and how it scored."""

    text: str
    round: int  # 0 = the original response
    temperature: float | None
    top_p: float | None
    scores: Scores
    key: float  # objective_key; higher is better

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "round": self.round, "temperature": self.temperature,
                "top_p": self.top_p, "scores": self.scores.to_dict(), "key": self.key}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        return cls(text=d["text"], round=d["round"], temperature=d["temperature"],
                   top_p=d["top_p"], scores=Scores.from_dict(d["scores"]), key=d["key"])


@dataclass
class RoundLog:
    """Counts for one item in one round: what was sampled, and what survived each filter."""

    round: int
    sampled: int = 0
    empty_or_truncated: int = 0
    echoes: int = 0  # texts that repeat the revision prompt (config.drop_prompt_echoes)
    duplicates: int = 0
    scored: int = 0
    below_floor: int = 0
    best_key: float | None = None


@dataclass
class CuratedItem:
    """The outcome for one source item, with its full provenance."""

    index: int  # position in the corpus (stable across chunking and resume)
    line: int  # line / item number in the source
    original: Conversation
    original_scores: Scores
    chosen: Candidate
    revised: bool
    note: str
    rounds: list[RoundLog] = field(default_factory=list)

    @property
    def curated(self) -> Conversation:
        """The original conversation with its final reply replaced by the chosen text."""
        reply = Message(role="assistant", content=self.chosen.text)
        return Conversation(messages=(*self.original.prompt_messages, reply))

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "line": self.line,
                "original": self.original.model_dump(mode="json"),
                "original_scores": self.original_scores.to_dict(),
                "chosen": self.chosen.to_dict(), "revised": self.revised, "note": self.note,
                "rounds": [vars(r) for r in self.rounds]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CuratedItem:
        return cls(index=d["index"], line=d["line"],
                   original=Conversation.model_validate(d["original"]),
                   original_scores=Scores.from_dict(d["original_scores"]),
                   chosen=Candidate.from_dict(d["chosen"]), revised=d["revised"],
                   note=d["note"], rounds=[RoundLog(**r) for r in d["rounds"]])


def clean_revision(text: str) -> str:
    """The revision without a "Rewritten response:" preamble or wrapping quotes."""
    text = _PREAMBLE.sub("", text.strip(), count=1).strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


class PromptEcho:
    """Finds where a revision repeats its revision prompt's scaffolding instead of answering.

    Small revisers sometimes continue the prompt ("...Question: Rewrite the answer so that it
    remains safe. Answer: ...") and such text can pass every quality floor. The scaffolding is
    read from the template itself (its literal text outside {query} and {response}): a label
    that ends a template line ("Question:"), or `ECHO_SHINGLE` consecutive words of its
    instructions. Text the original response already contains never counts, and words the
    instructions merely suggest ("ask an expert") are too short a run to count.
    """

    def __init__(self, template: str) -> None:
        literals = [lit for lit, _, _, _ in string.Formatter().parse(template) if lit]
        self.labels = sorted({m.group(1).strip().lower() for lit in literals
                              for line in lit.splitlines()
                              if (m := _LABEL.search(line.strip()))})
        self.shingles = {s for lit in literals for s in _shingles(lit)}
        # three content words of the instructions in a row ("practical safety point"): a reply
        # that names the instruction is describing its task, not doing it (seen with a 0.5B
        # reviser: "you can use the practical safety point outlined above")
        self.phrases = {s for lit in literals for s in _content_phrases(lit)}

    def __call__(self, text: str, original: str) -> str | None:
        """The echoed fragment, or None if `text` does not echo the template."""
        low, orig = text.lower(), original.lower()
        for label in self.labels:
            if label not in orig and re.search(rf"(?:^|\s){re.escape(label)}", low):
                return label
        for shingle in _shingles(text):
            if shingle in self.shingles and shingle not in orig:
                return shingle
        for phrase in _content_phrases(text):
            if phrase in self.phrases and phrase not in orig:
                return phrase
        return None


def _content_phrases(text: str) -> list[str]:
    """Runs of PHRASE_WORDS words none of which is a stopword."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    return [" ".join(words[i:i + PHRASE_WORDS]) for i in range(len(words) - PHRASE_WORDS + 1)
            if not any(w in STOPWORDS for w in words[i:i + PHRASE_WORDS])]


def _shingles(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return [" ".join(words[i:i + ECHO_SHINGLE]) for i in range(len(words) - ECHO_SHINGLE + 1)]


def sample_seed(base: int, item: int, round_: int, member: int, point: int) -> int:
    """A 63-bit seed fixed by the request's coordinates, never by batch layout."""
    digest = hashlib.sha256(f"{base}/{item}/{round_}/{member}/{point}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass
class _Request:
    item: int  # position in this call's item list
    member: int
    point: int


class BeamSearch:
    """Runs the search for many items; holds the models and resolved scorers for one config.

    `target_model`/`target_tokenizer` define perplexity (the model being protected); `reviser`
    writes the revisions (the same model by default, as in the paper).
    """

    def __init__(self, config: CurationConfig, *, target_model: Any, target_tokenizer: Any,
                 reviser: GenerationEngine, batch_tokens: int | None = None) -> None:
        self.config = config
        self.model, self.tokenizer = target_model, target_tokenizer
        self.reviser = reviser
        self.scorers = QualityScorers.from_config(config)
        self.echo = PromptEcho(config.revision_prompt) if config.drop_prompt_echoes else None
        self.batch_tokens = batch_tokens

    def run(self, items: Sequence[Conversation], indices: Sequence[int], lines: Sequence[int],
            *, on_round: Callable[[int, int], None] | None = None,
            on_candidate: Callable[[int, Candidate, list[str]], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> list[CuratedItem] | None:
        """Curate `items` (with their corpus indices and source lines). Returns None if
        `should_stop()` turned true between rounds (nothing partial is returned).

        `on_round(round, requests)` reports progress; `on_candidate(item, candidate,
        failed_floors)` sees every scored candidate (for audits and tests).
        """
        cfg = self.config
        originals = self._score_originals(items)
        original_cands = [Candidate(c.response, 0, None, None, s, objective_key(s, cfg))
                          for c, s in zip(items, originals)]
        survivors: list[list[Candidate]] = [[] for _ in items]
        seen: list[set[str]] = [{c.response.strip()} for c in items]
        logs: list[list[RoundLog]] = [[] for _ in items]
        for round_ in range(1, cfg.rounds + 1):
            if should_stop is not None and should_stop():
                return None
            members = [s or [o] for s, o in zip(survivors, original_cands)]
            requests, results = self._sample(items, indices, members, round_)
            fresh = self._collect(items, requests, results, seen, logs, round_)
            scored = self._score_candidates(items, fresh, originals)
            for (i, text, temp, top_p), (scores, failed) in zip(fresh, scored):
                candidate = Candidate(text, round_, temp, top_p, scores,
                                      objective_key(scores, cfg))
                if on_candidate is not None:
                    on_candidate(i, candidate, failed)
                if failed:
                    logs[i][-1].below_floor += 1
                else:
                    survivors[i].append(candidate)
            for i, pool in enumerate(survivors):
                # Ties broken by text so the order never depends on arrival order.
                pool.sort(key=lambda c: (-c.key, c.text))
                del pool[cfg.beam:]
                logs[i][-1].best_key = pool[0].key if pool else None
            if on_round is not None:
                on_round(round_, len(requests))
        return [self._outcome(items[i], indices[i], lines[i], originals[i], original_cands[i],
                              survivors[i], logs[i]) for i in range(len(items))]

    # ------------------------------------------------------------------ steps
    def _sample(self, items: Sequence[Conversation], indices: Sequence[int],
                members: list[list[Candidate]], round_: int) -> tuple[list[_Request], list[Any]]:
        cfg = self.config
        prompts: list[list[int]] = []
        params: list[SamplingParams] = []
        requests: list[_Request] = []
        for i, (item, beam) in enumerate(zip(items, members)):
            for m, member in enumerate(beam):
                message = cfg.render_revision_prompt(item.prompt, member.text, indices[i])
                ids = encode_chat(self.reviser.tokenizer, [{"role": "user", "content": message}])
                for g, (temp, top_p) in enumerate(cfg.grid):
                    seed = sample_seed(cfg.seed, indices[i], round_, m, g)
                    prompts.append(ids)
                    params.append(SamplingParams(max_new_tokens=cfg.max_new_tokens,
                                                 temperature=temp, top_p=top_p, seed=seed))
                    requests.append(_Request(i, m, g))
        return requests, self.reviser.generate(prompts, params)

    def _collect(self, items: Sequence[Conversation], requests: list[_Request], results: list[Any],
                 seen: list[set[str]], logs: list[list[RoundLog]],
                 round_: int) -> list[tuple[int, str, float, float]]:
        """New, complete, distinct texts per item that answer rather than echo the revision
        prompt (truncated ones would teach cut-off replies; echoes would teach the prompt)."""
        for log in logs:
            log.append(RoundLog(round_))
        fresh = []
        for req, res in zip(requests, results):
            log = logs[req.item][-1]
            log.sampled += 1
            text = clean_revision(res.text)
            finished = res.finish_reason == "stop"
            if text and not finished and self.config.cut_truncated:
                text, finished = cut_at_sentence_end(text) or "", True
            if not text or not finished:
                log.empty_or_truncated += 1
                continue
            if self.echo is not None and self.echo(text, items[req.item].response):
                log.echoes += 1
                continue
            if text in seen[req.item]:
                log.duplicates += 1
                continue
            seen[req.item].add(text)
            log.scored += 1
            temp, top_p = self.config.grid[req.point]
            fresh.append((req.item, text, temp, top_p))
        return fresh

    def _score_originals(self, items: Sequence[Conversation]) -> list[Scores]:
        """Every score of each item's original reply (they set the floors, and the summary
        reports their perplexity), perplexities batched."""
        if not items:
            return []
        ppl = self._perplexities([(conv, conv.response) for conv in items])
        return [self.scorers.score(conv.prompt, conv.response, p)
                for conv, p in zip(items, ppl)]

    def _score_candidates(self, items: Sequence[Conversation],
                          fresh: list[tuple[int, str, float, float]],
                          originals: list[Scores]) -> list[tuple[Scores, list[str]]]:
        """(scores, floors missed) per fresh candidate. Text scores and floors first; perplexity
        only for candidates that pass every floor (the rest keep perplexity NaN and a NaN key:
        no forward pass was spent on a text the floors already rejected)."""
        cfg = self.config
        out = []
        for i, text, _, _ in fresh:
            scores = self.scorers.score(items[i].prompt, text, math.nan, items[i].response)
            out.append((scores, floor_failures(scores, originals[i], cfg.quality_floor,
                                               cfg.min_retention, cfg.min_safety)))
        admitted = [k for k, (_, failed) in enumerate(out) if not failed]
        ppl = self._perplexities([(items[fresh[k][0]], fresh[k][1]) for k in admitted])
        for k, p in zip(admitted, ppl):
            out[k] = (replace(out[k][0], perplexity=p), [])
        return out

    def _perplexities(self, pairs: list[tuple[Conversation, str]]) -> list[float]:
        """Perplexity of each text as the reply to its item's prompt, under the target model."""
        if not pairs:
            return []
        return response_perplexities(
            self.model, self.tokenizer,
            [([m.model_dump() for m in conv.prompt_messages], text) for conv, text in pairs],
            batch_tokens=self.batch_tokens)

    @staticmethod
    def _outcome(item: Conversation, index: int, line: int, original_scores: Scores,
                 original: Candidate, pool: list[Candidate], log: list[RoundLog]) -> CuratedItem:
        if pool:
            return CuratedItem(index, line, item, original_scores, pool[0], True, "revised", log)
        return CuratedItem(index, line, item, original_scores, original, False, KEPT_ORIGINAL,
                           log)
