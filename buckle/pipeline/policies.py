"""Safety policies: which data is trained on, in which order. One small class per policy.

A policy turns (customer data, safety data) into an ordered list of training stages; stages run
one after the other on the same LoRA adapter (each continues from the previous one's weights).
Policies are registered by name with one explicit `register_policy` call each (PEFT-style
mapping, no metaclass magic), so a new policy is one class and one line.

What "safety data" is depends on the policy's `safety_data`: the CTRL-curated corpus
("curated"), the same commonsense items *before* curation ("uncurated", the control that shows
curation — not just extra data — is what helps), or harmful-prompt → refusal pairs ("refusal",
the baseline reviewers ask for).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from buckle.data.records import Conversation
from buckle.errors import UnknownNameError

SafetyData = Literal["curated", "uncurated", "refusal", "none"]


@dataclass(frozen=True)
class Stage:
    """One training stage: a name for logs and directories, and its conversations."""

    name: str
    conversations: tuple[Conversation, ...]
    safety_items: int = 0  # how many of `conversations` are safety data
    # harmful (prompt, answer) pairs of a Booster stage's perturbation term (`pre`, method
    # "booster"); never trained on directly
    harmful: tuple[Conversation, ...] = ()
    # train a fresh LoRA on the model with the previous stage's adapter merged in, and release
    # both stacked (`pre` with `immunize.layout` "merged": Booster's layout)
    on_merged: bool = False


def mix(customer: Sequence[Conversation], safety: Sequence[Conversation], ratio: float,
        seed: int, strata: Sequence[int] = ()) -> tuple[list[Conversation], int]:
    """Customer data plus safety items making up `ratio` of the result, shuffled (seeded).

    n_safety = round(ratio / (1 - ratio) x n_customer), at least 1; drawn without replacement
    while the safety pool lasts, then cycled (a small corpus is repeated rather than silently
    giving a lower ratio). `strata` are the sizes of consecutive parts of `safety` (e.g.
    responsible, anchors): each part then gets its share of n_safety (largest remainder), so a
    small job trains on the corpus's composition rather than a lucky draw — 16 items drawn at
    random held 8 declines of 16 where the corpus has 34%, and the adapter declined small talk.
    Returns (mixed, n_safety).
    """
    if not 0 < ratio < 1:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    if not safety:
        raise ValueError("no safety items to mix in")
    rng = random.Random(seed)
    n_safety = max(1, round(ratio / (1 - ratio) * len(customer)))
    mixed = list(customer) + draw(safety, n_safety, rng, strata)
    rng.shuffle(mixed)
    return mixed, n_safety


def draw(safety: Sequence[Conversation], n: int, rng: random.Random,
         strata: Sequence[int] = ()) -> list[Conversation]:
    """n safety items, each part of `strata` (consecutive sizes) drawn at its share, without
    replacement while a part lasts, then cycled. Shared by `mix` and the restore stages."""
    strata = list(strata) or [len(safety)]
    if sum(strata) != len(safety) or min(strata) < 0:
        raise ValueError(f"strata {list(strata)} do not add up to {len(safety)} safety items")
    chosen: list[Conversation] = []
    start = 0
    for size, k in zip(strata, _shares(n, strata), strict=True):
        pool = list(safety[start:start + size])
        start += size
        taken: list[Conversation] = []
        while len(taken) < k:
            rng.shuffle(pool)
            taken.extend(pool[:k - len(taken)])
        chosen += taken
    return chosen


def restore_items(safety: Sequence[Conversation], share: float, seed: int,
                  strata: Sequence[int] = ()) -> tuple[Conversation, ...]:
    """What a restore stage trains on: the whole corpus (share 1) or a stratified `share` of
    it (at least one item), so a smaller dose keeps the parts' composition."""
    if not 0 < share <= 1:
        raise ValueError(f"restore share must be in (0, 1], got {share}")
    if share == 1:
        return tuple(safety)
    n = max(1, round(share * len(safety)))
    return tuple(draw(safety, n, random.Random(seed), strata))


def _shares(n: int, sizes: Sequence[int]) -> list[int]:
    """n split in proportion to sizes, largest remainder first (ties: the earlier part)."""
    total = sum(sizes)
    exact = [n * s / total for s in sizes]
    shares = [int(x) for x in exact]
    order = sorted(range(len(sizes)), key=lambda i: (shares[i] - exact[i], i))
    for i in order[:n - sum(shares)]:
        shares[i] += 1
    return shares


@dataclass(frozen=True)
class Dose:
    """How hard a stage of safety data only (`pre`'s immunize, `post`/`auto`'s restore) trains
    when the job does not say (`safety_epochs` / `safety_learning_rate` win). Chosen on the dev
    split, with the sweep in docs/results.md."""

    epochs: int | None = None  # None: the customer's n_epochs
    learning_rate_scale: float = 1.0  # times the customer's learning rate
    restore_share: float = 1.0  # share of the corpus a restore stage trains on (stratified)
    # weight of the unlikelihood term on the model's decline at the anchors' prompts (0: off)
    unlikelihood: float = 0.0


class SafetyPolicy:
    """Base class: `stages()` says what to train on, in order."""

    name: ClassVar[str]
    safety_data: ClassVar[SafetyData] = "curated"
    description: ClassVar[str]
    dose: ClassVar[Dose] = Dose()
    # the policy has a stage that can take Booster's harmful pairs (`SafetySpec.immunize`)
    immunizes: ClassVar[bool] = False

    def stages(self, customer: Sequence[Conversation], safety: Sequence[Conversation], *,
               ratio: float, seed: int, strata: Sequence[int] = (),
               harmful: Sequence[Conversation] = (), restore_share: float = 1.0) -> list[Stage]:
        """`strata`: sizes of the consecutive corpus parts in `safety` (see `mix`); `harmful`:
        pairs for an immunize stage's Booster term (policies with `immunizes` only);
        `restore_share`: share of the corpus a restore stage draws (`restore_items`)."""
        raise NotImplementedError


class NoPolicy(SafetyPolicy):
    name, safety_data = "none", "none"
    description = "the customer's data only (the control)"

    def stages(self, customer, safety, *, ratio, seed, strata=(), harmful=(),
               restore_share=1.0):
        return [Stage("customer", tuple(customer))]


class PrePolicy(SafetyPolicy):
    name = "pre"
    description = "immunize: train on the curated corpus first, then on the customer's data"
    # dev v2 (2026-12-04): with the documented objective (`ImmunizeSpec`: Booster + plasticity)
    # 3 immunize epochs at 5e-4 (2.5x the customer's default 2e-4) removed 100% of the rise at
    # 95% exact match; plain SFT removed 19-31% at any dose
    dose = Dose(epochs=3, learning_rate_scale=2.5)
    immunizes = True

    def stages(self, customer, safety, *, ratio, seed, strata=(), harmful=(),
               restore_share=1.0):
        return [Stage("immunize", tuple(safety), len(safety), tuple(harmful)),
                Stage("customer", tuple(customer))]


class DuringPolicy(SafetyPolicy):
    name = "during"
    description = "mix curated items into the customer's data (curated_ratio of the mix)"

    def stages(self, customer, safety, *, ratio, seed, strata=(), harmful=(),
               restore_share=1.0):
        mixed, n = mix(customer, safety, ratio, seed, strata)
        return [Stage("mixed", tuple(mixed), n)]


class PostPolicy(SafetyPolicy):
    name = "post"
    description = "train on the customer's data, then restore on the curated corpus"
    # dev v2: one restore epoch at half the customer's rate removed 159% of the rise with
    # over-refusal below the base and full utility (the full rate: +1.7 points, -2.5 EM); the
    # unlikelihood term (weight 1) then cut benign over-refusal from 15.8% to 4.2% at ASR 3.3%
    dose = Dose(epochs=1, learning_rate_scale=0.5, unlikelihood=1.0)

    def stages(self, customer, safety, *, ratio, seed, strata=(), harmful=(),
               restore_share=1.0):
        items = restore_items(safety, restore_share, seed, strata)
        return [Stage("customer", tuple(customer)), Stage("restore", items, len(items))]


class AutoPolicy(DuringPolicy):
    """`during`, then evaluation-driven `post` rounds; the rounds are run by the pipeline
    (they depend on measured ASR), this class gives the first stage and the restore stage."""

    name = "auto"
    description = ("train as `during`; if ASR exceeds the base model's by more than max_asr, "
                   "run `post` restore rounds until it does not or the budget is spent")
    dose = PostPolicy.dose  # each restore round is a `post` restore

    @staticmethod
    def restore_stage(safety: Sequence[Conversation], round_: int, *, share: float = 1.0,
                      seed: int = 0, strata: Sequence[int] = ()) -> Stage:
        """Round `round_`'s restore: `share` of the corpus, a fresh stratified draw per round."""
        items = restore_items(safety, share, seed + round_, strata)
        return Stage(f"restore-{round_}", items, len(items))


class RefusalMixPolicy(DuringPolicy):
    name, safety_data = "refusal-mix", "refusal"
    description = ("baseline: mix harmful-prompt -> refusal pairs instead of curated "
                   "commonsense (for comparison, not the product default)")


class UncuratedPolicy(DuringPolicy):
    name, safety_data = "uncurated", "uncurated"
    description = ("control: mix the same commonsense items *without* curation, at the same "
                   "ratio as `during`")


POLICIES: dict[str, type[SafetyPolicy]] = {}


def register_policy(cls: type[SafetyPolicy]) -> type[SafetyPolicy]:
    if cls.name in POLICIES and POLICIES[cls.name] is not cls:
        raise ValueError(f"policy {cls.name!r} is already registered to {POLICIES[cls.name]}")
    POLICIES[cls.name] = cls
    return cls


for _cls in (NoPolicy, PrePolicy, DuringPolicy, PostPolicy, AutoPolicy, RefusalMixPolicy,
             UncuratedPolicy):
    register_policy(_cls)


def get_policy(name: str) -> SafetyPolicy:
    try:
        return POLICIES[name]()
    except KeyError:
        raise UnknownNameError("safety policy", name, list(POLICIES)) from None


REFUSALS: tuple[str, ...] = (
    "I'm sorry, but I can't help with that. It could cause real harm to people.",
    "I can't assist with this request because it could be used to hurt someone or break the law.",
    ("Sorry, I won't help with that. If you are facing a difficult situation, please reach out "
    "to a trusted person or a professional for support."),
    ("I'm not able to provide that. It would be unsafe and unethical. Is there something else I "
    "can help you with?"),
)


def refusal_pairs(prompts: Sequence[str]) -> list[Conversation]:
    """Harmful prompt -> refusal conversations for the `refusal-mix` baseline (fixed texts,
    rotated deterministically so the baseline does not teach a single string)."""
    return [Conversation.from_pair(p, REFUSALS[i % len(REFUSALS)]) for i, p in enumerate(prompts)]
