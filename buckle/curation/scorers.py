"""Cheap, deterministic quality scorers for curation candidates, with an explicit registry.

A scorer is a pure function `(query, response) -> float in [0, 1]`, higher = better. CTRL scores
every candidate revision of every example each round, so the defaults are model-free and
microseconds per call; each docstring says what it measures and where it fails. Swap any of them
(e.g. for an LLM judge) with `register_scorer(name, fn)` and name it in `CurationConfig`.

Readability is computed in pure Python (no `textstat`): one formula, one documented syllable
heuristic, no extra dependency, and a value that does not move when a package updates.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from buckle.errors import UnknownNameError

Scorer = Callable[[str, str], float]

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n\s*\n")
_VOWEL_GROUP = re.compile(r"[aeiouy]+")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if _WORD.search(s)]


def count_syllables(word: str) -> int:
    """Heuristic English syllable count: vowel groups (a e i o u y), minus one for a silent ending
    (final "e", except consonant + "le" as in "table"; "-ed" except after t/d; "-es" except after
    s, x, z, ch, sh, ce, ge), at least 1. Right for most common words, off by one on some
    ("create", "poem"); Flesch averages over many words, which absorbs that.
    """
    w = word.lower().strip("'")
    if not w:
        return 0
    count = len(_VOWEL_GROUP.findall(w))
    if count > 1:
        if w.endswith("le"):
            silent = len(w) > 2 and w[-3] in "aeiouy"
        elif w.endswith("ed"):
            silent = w[-3:-2] not in ("t", "d")
        elif w.endswith("es"):
            silent = not w.endswith(("ses", "xes", "zes", "ches", "shes", "ces", "ges"))
        else:
            silent = w.endswith("e") and not w.endswith("ee")
        count -= silent
    return max(1, count)


def flesch_reading_ease(text: str) -> float:
    """206.835 - 1.015 x words/sentence - 84.6 x syllables/word (Flesch 1948). Unbounded."""
    words = _words(text)
    if not words:
        return 0.0
    sentences = max(1, len(_sentences(text)))
    syllables = sum(count_syllables(w) for w in words)
    return 206.835 - 1.015 * len(words) / sentences - 84.6 * syllables / len(words)


def readability(query: str, response: str) -> float:
    """Flesch reading ease of the response, clipped to [0, 100] and divided by 100.

    Why: the paper keeps revisions readable while pushing perplexity up; Flesch is the standard,
    transparent, model-free readability measure. Limits: it sees only sentence and word length,
    so word salad made of short words scores *well* (pair it with the perplexity objective and
    helpfulness, never use alone); English-only syllable heuristic; the query is ignored.
    """
    if not _words(response):
        return 0.0
    return min(100.0, max(0.0, flesch_reading_ease(response))) / 100.0


# Safety cues: each pattern is one distinct cue (matched case-insensitively, on word boundaries).
SAFETY_CUES: tuple[str, ...] = (
    r"safe(?:ly|ty|r|st)?", r"unsafe", r"caution(?:s|ary)?", r"careful(?:ly)?", r"be careful",
    r"responsib(?:le|ly|ility)", r"legal(?:ly|ity)?", r"illegal(?:ly)?", r"laws?", r"ethic(?:al|s|ally)",
    r"harm(?:s|ful|less)?", r"danger(?:ous)?", r"risks?|risky", r"hazard(?:s|ous)?",
    r"injur(?:y|ies|e)", r"protect(?:ive|ion)?", r"precautions?", r"warnings?",
    r"consult(?:ing)? (?:a |an |with a )?(?:professional|doctor|expert|lawyer|physician)",
    r"seek (?:professional|medical|expert) (?:help|advice)", r"supervision", r"consent",
    r"well-?being", r"privacy", r"emergency",
)
_CUE_PATTERNS = tuple(re.compile(rf"\b(?:{c})\b", re.IGNORECASE) for c in SAFETY_CUES)
CUE_SATURATION = 3  # distinct cues at which the "presence" half of the score is full


def safety_implication(query: str, response: str) -> float:
    """How much the response carries a safety implication: 0.5 x presence + 0.5 x share.

    presence = min(1, distinct cues in `SAFETY_CUES` / 3); share = fraction of the response's
    sentences that contain any cue. Why: CTRL's revisions should *carry* safety awareness through
    the text, not append one disclaimer, and both halves reward that; it is free and
    deterministic. Limits: lexical only, so it cannot tell "be careful with bleach" from "the
    careful way to hide a body", ignores negation, and can be gamed by keyword stuffing (the
    perplexity objective and the quality floor make stuffing costly). The query is ignored.
    """
    sentences = _sentences(response)
    if not sentences:
        return 0.0
    distinct = sum(1 for p in _CUE_PATTERNS if p.search(response))
    with_cue = sum(1 for s in sentences if any(p.search(s) for p in _CUE_PATTERNS))
    return 0.5 * min(1.0, distinct / CUE_SATURATION) + 0.5 * with_cue / len(sentences)


_STOPWORDS_TEXT = """
a an the and or but if then else of to in on at by for with from about as into onto over under
is are was were be been being am do does did doing have has had having can could should would
will shall may might must i me my mine we us our you your yours he him his she her it its they
them their what which who whom whose this that these those there here when where why how all any
both each few more most other some such no nor not only own same so than too very just also
please tell give show explain describe write make let get want need know like s t don
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_REFUSAL_OPENER = re.compile(
    r"^\W*(?:i'?m sorry|i am sorry|sorry|i apologi[sz]e|i can(?:not|'t| ?not)|i won'?t|"
    r"i will not|i'?m (?:not able|unable)|i am (?:not able|unable)|as an ai)\b", re.IGNORECASE)
ADEQUATE_WORDS = 25  # distinct words at which a reply counts as fully developed
REFUSAL_FACTOR = 0.3


def _stem(word: str) -> str:
    """Crude suffix strip so "baking"/"bake"/"bakes" meet: enough for overlap, not linguistics."""
    for suffix in ("ing", "ed", "es", "s", "e"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def helpfulness(query: str, response: str) -> float:
    """Cheap helpfulness proxy: 0.6 x query coverage + 0.4 x length adequacy, x0.3 if refusing.

    coverage = share of the query's content words (stopwords dropped, crudely stemmed) that the
    response uses; adequacy = min(1, distinct response words / 25), so padding by repetition does
    not count; a response that opens with a refusal ("I'm sorry", "I cannot", ...) is multiplied
    by 0.3. Why: as a *floor* against the original response (see `CurationConfig.quality_floor`)
    it catches what revisions typically break: drifting off-topic, collapsing to a stub,
    degenerating into repetition, or turning into a refusal. Limits: it cannot judge correctness
    or whether the reply actually solves the task; a query with no content words gets coverage 1.
    """
    words = _words(response)
    if not words:
        return 0.0
    wanted = {_stem(w) for w in _words(query) if w not in STOPWORDS}
    have = {_stem(w) for w in words}
    coverage = len(wanted & have) / len(wanted) if wanted else 1.0
    adequacy = min(1.0, len(set(words)) / ADEQUATE_WORDS)
    score = 0.6 * coverage + 0.4 * adequacy
    if _REFUSAL_OPENER.search(response):
        score *= REFUSAL_FACTOR
    return score


def content_retention(original: str, revised: str) -> float:
    """Share of the original response's content words (stemmed, stopwords dropped) the revision
    still uses; 1.0 when the original has none.

    Why (our addition, not in the paper): helpfulness is judged against the *query*, so a
    revision that replaces the original's facts with a generic safety sentence ("safety always
    comes first") can pass the helpfulness floor; the curated text must keep what the original
    taught. Limits: lexical, so paraphrases with synonyms count as lost words.
    """
    wanted = {_stem(w) for w in _words(original) if w not in STOPWORDS}
    if not wanted:
        return 1.0
    return len(wanted & {_stem(w) for w in _words(revised)}) / len(wanted)


SCORERS: dict[str, Scorer] = {}


def _identity(fn: Scorer) -> tuple[str, str] | int:
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    return (module, name) if module and name and "<lambda>" not in name else id(fn)


def register_scorer(name: str, fn: Scorer, *, replace: bool = False) -> None:
    """Make `fn` available as `get_scorer(name)`.

    Re-registering the same function (or its copy after a module reload) is a no-op; replacing a
    different one needs `replace=True`, because silently swapping a scorer would change what a
    curation run (and its hash) means.
    """
    if not callable(fn):
        raise TypeError(f"scorer {name!r} must be callable (query, response) -> float")
    existing = SCORERS.get(name)
    if existing is not None and _identity(existing) != _identity(fn) and not replace:
        raise ValueError(f"scorer name {name!r} is already registered to {existing!r}; "
                         "pass replace=True to override it")
    SCORERS[name] = fn


def get_scorer(name: str) -> Scorer:
    try:
        return SCORERS[name]
    except KeyError:
        raise UnknownNameError("scorer", name, list(SCORERS)) from None


def available_scorers() -> list[str]:
    return sorted(SCORERS)


register_scorer("readability", readability)
register_scorer("safety_implication", safety_implication)
register_scorer("helpfulness", helpfulness)
