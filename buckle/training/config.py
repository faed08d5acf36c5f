"""`TrainingConfig`: every knob of one LoRA fine-tune, frozen, JSON round-trippable and hashed.

The config is split from the model code (as PEFT splits `LoraConfig` from `LoraModel`): it is
saved next to every checkpoint and the final adapter, so any adapter says how it was made, and
its hash is part of the run fingerprint that decides whether an output directory may be resumed
or reused.

Field names follow `buckle.pipeline.spec.Hyperparameters` (and the OpenAI fine-tuning API where
one exists), so `TrainingConfig(**hyperparameters.model_dump(), seed=spec.seed)` just works.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Schedule = Literal["linear", "cosine", "constant"]
Autocast = Literal["auto", "bf16", "off"]

# Fields that change when and how much is written or how work is split into forward passes,
# but not what is learned (beyond float rounding): a resumed or reused run may differ in them.
CPU_PASS_TOKENS, ACCELERATOR_PASS_TOKENS = 1024, 8192
OPERATIONAL_FIELDS = frozenset({"checkpoint_every", "keep_checkpoints", "micro_batch_tokens"})
# optional loss terms added after runs were fingerprinted: left out of the hash while off, so
# adding one never orphans an existing run's checkpoints or finished adapter
OPTIONAL_TERMS = frozenset({"unlikelihood", "plasticity"})


class BoosterConfig(BaseModel):
    """Booster's harmful-perturbation term (Huang et al., 2024, "Booster: Tackling Harmful
    Fine-tuning for Large Language Models via Attenuating Harmful Perturbation").

    Each step adds weight x (h(w) - h(w - step x grad h / |grad h|)) to the loss, h being the
    loss on a batch of harmful (prompt, harmful answer) pairs: the adapter is pushed to where
    one normalised step of harmful fine-tuning lowers h as little as possible, so the
    customer's later steps on harmful data undo less of the alignment. Costs two more passes
    (harmful batch at w and at the perturbed w) per step. Defaults: the paper's lambda and
    alpha.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    weight: float = Field(5.0, gt=0, le=100)  # lambda
    step: float = Field(0.1, gt=0, le=10)  # alpha, the normalised perturbation size


class PlasticityConfig(BaseModel):
    """A look-ahead term over benign (prompt, answer) pairs, next to Booster's: each step adds
    weight x b(w - step x grad b / |grad b|), b the loss on a batch of benign pairs, i.e. the
    benign loss after one normalised benign step (first order, as MAML's). Why: Booster
    flattens the directions harmful fine-tuning takes, and the customer's own task shares many
    of them (dev v2: 3 Booster epochs cost 18 points of the customer's exact match); this term
    keeps a benign step effective. Two more passes per step. (Booster's difference with the
    sign turned rewards raising b(w) itself and wrecked the model on dev: `booster.py`.)
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    weight: float = Field(5.0, gt=0, le=100)  # mu
    step: float = Field(0.1, gt=0, le=10)  # the normalised perturbation size


class UnlikelihoodConfig(BaseModel):
    """A sequence-level unlikelihood term over (prompt, reply to avoid) pairs (Welleck et al.,
    2019, at the level of a whole reply): each step adds weight x mean over a batch of pairs of
    -log(1 - P(reply | prompt)). Why: a restore stage teaches the base model's one decline
    string on harmful prompts, and that string then leaks onto ordinary prompts (benign
    over-refusal); the anchors' own answers only push it down indirectly. Pairing the anchors'
    prompts with that decline says "not here" directly, and the term vanishes where the decline
    is already unlikely, so it acts only on prompts the model would decline. One more pass per
    step over short rows.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    weight: float = Field(1.0, gt=0, le=100)


class TrainingConfig(BaseModel):
    """Hyperparameters of one LoRA SFT run.

    Attributes:
        n_epochs: passes over the data.
        batch_size: conversations per optimizer step (the OpenAI meaning). A step's gradient is
            the sum over its conversations, divided by its number of assistant tokens.
        learning_rate: peak AdamW learning rate.
        lr_schedule: "linear" (warmup, then linear decay towards 0, as OpenAI and most LoRA
            recipes), "cosine" (warmup, then cosine decay towards 0) or "constant" (after warmup).
        warmup_ratio: share of all optimizer steps spent warming up linearly (rounded up).
        weight_decay: AdamW decoupled weight decay on the LoRA weights.
        max_grad_norm: clip the global gradient norm to this; None disables clipping.
        lora_r, lora_alpha, lora_dropout: LoRA rank, scale numerator (scale = alpha / r) and
            dropout on the adapter's input.
        lora_target_modules: module names to adapt, or "all-linear" (every linear projection of
            the transformer blocks; never the output head).
        max_seq_len: a conversation longer than this (chat template included) is an error, not
            silently truncated: truncation would cut the very reply being learned.
        micro_batch_tokens: bound on rows x padded width per forward pass (memory knob). A
            step's conversations are split into as many micro-batches as needed (gradient
            accumulation); the loss normalisation makes the result independent of the split.
            None = 1024 on CPU, 8192 on an accelerator (LoRA training of the 135M default model
            keeps ~2 MB of fp32 activations per token; larger models keep more).
        autocast: "auto" = bf16 autocast on CUDA and on CPUs with native bf16 matmuls
            (AVX512-BF16/AMX), none on other CPUs (slower there, see docs/benchmarks.md);
            "bf16" = always; "off" = never.
        seed: seeds the LoRA initialisation, the data order and dropout.
        checkpoint_every: write a resumable checkpoint every N optimizer steps (0 = never; a
            cancelled run still writes one).
        keep_checkpoints: how many of the newest checkpoints to keep.
        booster: add Booster's harmful-perturbation term (`BoosterConfig`); the run then needs
            harmful pairs (`train_lora(harmful=...)`). None: plain SFT.
        unlikelihood: add the unlikelihood term (`UnlikelihoodConfig`); the run then needs
            (prompt, reply to avoid) pairs (`train_lora(negatives=...)`). None: off.
        plasticity: add the benign-plasticity term (`PlasticityConfig`); the run then needs
            benign (prompt, answer) pairs (`train_lora(benign=...)`). None: off.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    n_epochs: int = Field(3, ge=1, le=100)
    batch_size: int = Field(8, ge=1, le=4096)
    learning_rate: float = Field(2e-4, gt=0, le=1e-1)
    lr_schedule: Schedule = "linear"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    lora_r: int = Field(16, ge=1, le=1024)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: tuple[str, ...] | Literal["all-linear"] = "all-linear"
    max_seq_len: int = Field(1024, ge=16)
    micro_batch_tokens: int | None = Field(None, ge=16)
    autocast: Autocast = "auto"
    seed: int = 0
    checkpoint_every: int = Field(50, ge=0)
    keep_checkpoints: int = Field(2, ge=1)
    booster: BoosterConfig | None = None
    unlikelihood: UnlikelihoodConfig | None = None
    plasticity: PlasticityConfig | None = None

    @field_validator("lora_target_modules")
    @classmethod
    def _check_targets(cls, value: tuple[str, ...] | str) -> tuple[str, ...] | str:
        if isinstance(value, tuple):
            if not value or any(not name.strip() for name in value):
                raise ValueError('lora_target_modules must name at least one module (or be '
                                 '"all-linear"); got an empty name or an empty list')
            return tuple(sorted(set(value)))  # order and duplicates do not change the adapter
        return value

    # ----------------------------------------------------------------- derived
    def tokens_per_pass(self, device_type: str) -> int:
        if self.micro_batch_tokens is not None:
            return self.micro_batch_tokens
        return CPU_PASS_TOKENS if device_type == "cpu" else ACCELERATOR_PASS_TOKENS

    def warmup_steps(self, total_steps: int) -> int:
        return math.ceil(self.warmup_ratio * total_steps)

    def lr_factor(self, step: int, total_steps: int) -> float:
        """Multiplier of `learning_rate` for 0-based optimizer step `step`.

        No step runs at lr 0: warmup starts at 1/(warmup+1) and decay ends one step above 0,
        so a tiny job (a few steps) still learns from every batch.
        """
        warmup = self.warmup_steps(total_steps)
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if self.lr_schedule == "constant":
            return 1.0
        done = (step - warmup) / max(1, total_steps - warmup)
        if self.lr_schedule == "linear":
            return 1.0 - done
        return 0.5 * (1.0 + math.cos(math.pi * done))

    # ----------------------------------------------------------------- identity
    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> TrainingConfig:
        return cls.model_validate_json(text)

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the fields that change what is learned.

        `OPERATIONAL_FIELDS` are left out, so e.g. checkpointing more often does not orphan a
        run's checkpoints or its finished adapter.
        """
        learned = {k: v for k, v in self.model_dump(mode="json").items()
                   if k not in OPERATIONAL_FIELDS and not (k in OPTIONAL_TERMS and v is None)}
        canonical = json.dumps(learned, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
