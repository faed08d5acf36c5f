"""`train_lora`: supervised LoRA fine-tuning of a loaded base model, as a plain PyTorch loop.

One recipe, torchtune-style: setup (fingerprint, lock, tokenize, attach LoRA, optimizer) ->
train (bucketed batches, gradient accumulation over micro-batches, loss summed over assistant
tokens and divided by the step's assistant-token count, clipping, AdamW, LR schedule) -> save
(atomic PEFT adapter) -> cleanup (LoRA removed from the base, RNG of the caller untouched).

Speed and memory: the logits over the 49k-token vocabulary dominate both for a small model, so
the base model's body runs on the whole batch but the output head only on positions that have a
label (roughly the reply tokens), and no attention mask is built: rows are right-padded, and
under a causal mask a real token never sees the padding after it.

Resumability: a run is identified by a fingerprint of (config, base model, data, init adapter).
Checkpoints hold everything that evolves (LoRA weights, AdamW moments, LR schedule, RNG streams,
step). The data order of every epoch is a pure function of (seed, epoch), so the step number is
the data position; a resumed run repeats the uninterrupted one's arithmetic (tested).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from buckle.data.records import Conversation
from buckle.generation.engine import stop_token_ids
from buckle.models.device import cpu_prefers_bf16
from buckle.models.hub import LoadedModel
from buckle.training.booster import add_lookahead_gradient, add_perturbation_gradient
from buckle.training.checkpoint import (
    ADAPTER,
    TrainerState,
    list_checkpoints,
    read_final_result,
    read_trainer_state,
    remove_partial_writes,
    restore_optimizer,
    save_checkpoint,
    save_final_adapter,
)
from buckle.training.config import TrainingConfig
from buckle.training.data import (
    MicroBatch,
    TokenizedConversation,
    cycled_batch,
    epoch_batches,
    micro_batches,
    tokenize_conversations,
)
from buckle.training.errors import RunMismatchError, TrainingCancelled
from buckle.training.lora import (
    ADAPTER_WEIGHTS,
    attached_lora,
    load_adapter_weights,
    merged_adapter,
)
from buckle.training.loss import summed_token_nll, summed_unlikelihood


@dataclass(frozen=True)
class TrainProgress:
    """Reported after every optimizer step. `epoch` counts from 1; `loss` is this step's."""

    step: int
    total_steps: int
    epoch: int
    n_epochs: int
    loss: float
    tokens_per_s: float  # non-padding tokens per second since this call started
    eta_s: float


ProgressCallback = Callable[[TrainProgress], None]
CheckpointCallback = Callable[[int, Path, float | None], None]  # (step, folder, loss)
CancelCheck = Callable[[], bool]


@dataclass
class TrainResult:
    """What a finished run produced. `reused`: the output directory already held it."""

    adapter_dir: Path
    steps: int
    trained_tokens: int  # assistant tokens the loss was computed on, all steps
    useful_tokens: int  # non-padding tokens fed, all steps
    padded_tokens: int  # rows x width fed, padding included
    final_loss: float
    losses: list[float]
    checkpoints: list[Path]
    fingerprint: str
    resumed_from_step: int | None = None
    reused: bool = False
    elapsed_s: float = 0.0  # this call's training time (0 when reused)
    config: dict[str, Any] = field(default_factory=dict)


# The optional terms' side sets, never trained on directly: (config field, label in the
# fingerprint, seed offset of its per-step batches). Each step's batch of a side set is a pure
# function of (seed, step), so a resumed run repeats the uninterrupted one's arithmetic.
SIDE_SETS = (("booster", "harmful", 1), ("unlikelihood", "negatives", 2),
             ("plasticity", "benign", 3))


def run_fingerprint(base: LoadedModel, conversations: Sequence[Conversation],
                    config: TrainingConfig, init_adapter: Path | None,
                    base_adapter: Path | None = None,
                    sides: Mapping[str, Sequence[Conversation]] | None = None) -> str:
    """sha256 over everything that decides the trained weights. `sides`: the optional terms'
    pairs by term name (`SIDE_SETS`); an empty one adds nothing, so a run without a term keeps
    the fingerprint it had before the term existed."""
    h = hashlib.sha256()
    h.update(f"config:{config.config_hash()}\nbase:{base.fingerprint}\n".encode())
    for conversation in conversations:
        h.update(conversation.to_json().encode("utf-8") if isinstance(conversation, Conversation)
                 else repr(conversation).encode())
        h.update(b"\n")
    for term, label, _ in SIDE_SETS:
        if (sides or {}).get(term):
            h.update(label.encode() + b":")
            for conversation in sides[term]:
                h.update(conversation.to_json().encode("utf-8") + b"\n")
    for label, adapter in ((b"init:", init_adapter), (b"merged:", base_adapter)):
        if adapter is not None:
            weights = Path(adapter) / ADAPTER_WEIGHTS
            h.update(label + (hashlib.sha256(weights.read_bytes()).digest()
                              if weights.is_file() else str(adapter).encode()))
    return h.hexdigest()


def train_lora(
    base: LoadedModel,
    conversations: Sequence[Conversation],
    config: TrainingConfig,
    out_dir: str | Path,
    *,
    init_adapter: str | Path | None = None,
    base_adapter: str | Path | None = None,
    harmful: Sequence[Conversation] = (),
    negatives: Sequence[Conversation] = (),
    benign: Sequence[Conversation] = (),
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    on_checkpoint: CheckpointCallback | None = None,
) -> TrainResult:
    """Train a LoRA adapter on `conversations`; write it to `out_dir/adapter` in PEFT format.

    Re-running with the same arguments returns the finished adapter without training, or resumes
    from the newest checkpoint in `out_dir`. `init_adapter` continues from an existing adapter
    (same rank/alpha/modules) instead of a fresh LoRA initialisation. `base_adapter` is merged
    into the base for the run (exactly undone after) and a fresh LoRA trains on top of it:
    Booster's layout, where the customer's adapter learns on the immunized model (combine the
    two with `stack_adapters`). `harmful`: the (prompt,
    harmful answer) pairs of `config.booster`'s perturbation term (required with it, refused
    without it). `negatives`: the (prompt, reply to avoid) pairs of `config.unlikelihood`'s
    term, `benign` the (prompt, answer) pairs of `config.plasticity`'s (each likewise
    required with its term and refused without it). `base` is used in place
    and restored afterwards: no LoRA stays in it and nothing is merged. Raises
    `TrainingCancelled` when `should_cancel()` turns true (checked before every step),
    `DatasetFormatError` for conversations that cannot be trained on (all listed at once),
    `on_checkpoint(step, folder, loss)` is called for every resumable state on disk: each
    checkpoint as it is saved (also the one a cancel saves), the one a resume starts from,
    and the final adapter (a reused run reports it again), so a caller that records them
    idempotently lists every one after any number of kills.
    `RunMismatchError` when `out_dir` holds a different run, `AdapterMismatchError` for an
    init adapter that does not fit.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    init = Path(init_adapter) if init_adapter is not None else None
    merged = Path(base_adapter) if base_adapter is not None else None
    sides = {"booster": harmful, "unlikelihood": negatives, "plasticity": benign}
    for term, label, _ in SIDE_SETS:
        if bool(sides[term]) != (getattr(config, term) is not None):
            raise ValueError(f"{label} pairs go with config.{term}, and config.{term} needs "
                             "them: pass both or neither")
    fingerprint = run_fingerprint(base, conversations, config, init, merged, sides)
    with FileLock(str(out / ".lock")):  # one trainer per directory; released if killed
        remove_partial_writes(out)
        finished = read_final_result(out)
        if finished is not None:
            _check_fingerprint(out, finished["fingerprint"], fingerprint)
            result = _result_from_summary(out, finished, reused=True)
            if on_checkpoint is not None:
                on_checkpoint(result.steps, result.adapter_dir, result.final_loss)
            return result
        checkpoints = list_checkpoints(out)
        resume = checkpoints[-1] if checkpoints else None
        if resume is not None:
            _check_fingerprint(out, read_trainer_state(resume).fingerprint, fingerprint)
        examples = tokenize_conversations(base.tokenizer, conversations, config.max_seq_len)
        side_examples = {term: tokenize_conversations(base.tokenizer, pairs, config.max_seq_len)
                         for term, pairs in sides.items() if pairs}
        devices = [base.device.index or 0] if base.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the caller's RNG streams stay untouched
            torch.manual_seed(config.seed)
            with (merged_adapter(base.model, merged) if merged else nullcontext()), \
                    attached_lora(base.model, config) as model:
                return _fit(model, examples, config, out, fingerprint, init=init, resume=resume,
                            sides=side_examples,
                            device=base.device, pad_id=_pad_id(base.tokenizer),
                            progress=progress, should_cancel=should_cancel,
                            on_checkpoint=on_checkpoint or (lambda *_: None))


def _check_fingerprint(out: Path, found: str, expected: str) -> None:
    if found != expected:
        raise RunMismatchError(out, found, expected)


def _pad_id(tokenizer: Any) -> int:
    """Any valid id works: padding sits after every real token and is never scored."""
    pad = tokenizer.pad_token_id
    return int(pad) if pad is not None else min(stop_token_ids(tokenizer, None))


def autocast_dtype(config: TrainingConfig, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA, and on a CPU where bf16 matmuls are measured faster than fp32
    (`cpu_prefers_bf16`: Qwen-0.5B LoRA 51 -> 99 tok/s on an AVX512-BF16 EPYC); fp32 elsewhere."""
    if config.autocast == "off":
        return None
    if config.autocast == "auto" and not (device.type == "cuda" or cpu_prefers_bf16()):
        return None
    return torch.bfloat16


def _run_dtype(state: TrainerState, chosen: torch.dtype | None) -> torch.dtype | None:
    """The autocast dtype of the run: the one its checkpoint recorded, else `chosen` (recorded
    now). A measured `auto` choice can differ between processes (a loaded host, another
    thread count); a resumed run that switched dtype would no longer repeat the unkilled one."""
    if state.compute_dtype is None:
        state.compute_dtype = str(chosen or torch.float32).removeprefix("torch.")
        return chosen
    return torch.bfloat16 if state.compute_dtype == "bfloat16" else None


def _fit(model: Any, examples: list[TokenizedConversation], config: TrainingConfig, out: Path,
         fingerprint: str, *, init: Path | None, resume: Path | None,
         sides: dict[str, list[TokenizedConversation]], device: torch.device, pad_id: int, progress: ProgressCallback | None,
         should_cancel: CancelCheck | None, on_checkpoint: CheckpointCallback) -> TrainResult:
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total = steps_per_epoch * config.n_epochs
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: config.lr_factor(step, total))
    if resume is not None:
        load_adapter_weights(model, resume, config)
        restore_optimizer(resume, optimizer, scheduler)
        state = read_trainer_state(resume)
        on_checkpoint(state.step, resume, state.losses[-1] if state.losses else None)
    else:
        if init is not None:
            load_adapter_weights(model, init, config)
        state = TrainerState(fingerprint, 0, total, steps_per_epoch)
    lengths = [len(e) for e in examples]
    batches_of_epoch = lru_cache(maxsize=1)(
        lambda epoch: epoch_batches(lengths, config.batch_size, config.seed, epoch))
    amp = _run_dtype(state, autocast_dtype(config, device))
    clock = _Clock(state.step)
    last_saved, saved_at = resume, state.step

    def save() -> Path:
        nonlocal saved_at
        saved_at = state.step
        return save_checkpoint(out, model, optimizer, scheduler, state, config)

    model.train()
    while state.step < total:
        if should_cancel is not None and should_cancel():
            if state.step > saved_at:
                last_saved = save()
                on_checkpoint(state.step, last_saved, state.losses[-1] if state.losses else None)
            raise TrainingCancelled(state.step, total, last_saved)
        rows = [examples[i] for i in batches_of_epoch(state.epoch)[state.batch_in_epoch]]
        passes = micro_batches(rows, pad_id, config.tokens_per_pass(device.type))
        side_passes = {term: micro_batches(
            cycled_batch(sides[term], config.batch_size, config.seed + offset, state.step),
            pad_id, config.tokens_per_pass(device.type))
            for term, _, offset in SIDE_SETS if term in sides}
        loss = _optimizer_step(model, passes, params, optimizer, scheduler, config, device, amp,
                               side_passes)
        _record(state, loss, passes)
        if progress is not None:
            progress(clock.report(state, loss, sum(p.useful_tokens for p in passes), config))
        if config.checkpoint_every and state.step % config.checkpoint_every == 0 \
                and state.step < total:  # the last step's weights become the adapter instead
            last_saved = save()
            on_checkpoint(state.step, last_saved, loss)
    summary = {**asdict(state), "final_loss": state.losses[-1],
               "resumed_from_step": clock.start_step if resume is not None else None,
               "elapsed_s": round(clock.elapsed(), 3), "config": config.model_dump(mode="json")}
    save_final_adapter(out, model, config, summary)
    result = _result_from_summary(out, summary, reused=False)
    on_checkpoint(result.steps, result.adapter_dir, result.final_loss)
    return result


def _record(state: TrainerState, loss: float, passes: list[MicroBatch]) -> None:
    state.step += 1
    state.losses.append(loss)
    state.trained_tokens += sum(p.n_targets for p in passes)
    state.useful_tokens += sum(p.useful_tokens for p in passes)
    state.padded_tokens += sum(p.input_ids.numel() for p in passes)


class _Clock:
    """Throughput and ETA of this call (a resumed run's earlier steps ran at another speed)."""

    def __init__(self, start_step: int) -> None:
        self.start_step, self.t0, self.tokens = start_step, time.perf_counter(), 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def report(self, state: TrainerState, loss: float, useful_tokens: int,
               config: TrainingConfig) -> TrainProgress:
        self.tokens += useful_tokens
        elapsed = self.elapsed()
        per_step = elapsed / (state.step - self.start_step)
        return TrainProgress(
            step=state.step, total_steps=state.total_steps,
            epoch=(state.step - 1) // state.steps_per_epoch + 1, n_epochs=config.n_epochs,
            loss=loss, tokens_per_s=self.tokens / elapsed,
            eta_s=per_step * (state.total_steps - state.step))


def _optimizer_step(model: Any, passes: list[MicroBatch], params: list[torch.Tensor],
                    optimizer: torch.optim.Optimizer, scheduler: Any, config: TrainingConfig,
                    device: torch.device, amp: torch.dtype | None,
                    side_passes: Mapping[str, list[MicroBatch]]) -> float:
    """Accumulate gradients over the micro-batches, then clip and step; returns the step's loss
    (the alignment loss; the optional terms, when on, add to the gradient only)."""

    def accumulate(batches: list[MicroBatch]) -> float:
        return _accumulate(model, batches, device, amp)

    total = accumulate(passes)
    if config.booster is not None:
        add_perturbation_gradient(params, side_passes["booster"], accumulate,
                                  config.booster.weight, config.booster.step)
    if config.plasticity is not None:
        add_lookahead_gradient(params, side_passes["plasticity"], accumulate,
                               config.plasticity.weight, config.plasticity.step)
    if config.unlikelihood is not None:
        _accumulate_unlikelihood(model, side_passes["unlikelihood"], device, amp,
                                 config.unlikelihood.weight)
    if config.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def _accumulate(model: Any, passes: list[MicroBatch], device: torch.device,
                amp: torch.dtype | None) -> float:
    """Add the gradient of the per-token mean loss over `passes`; return that loss.

    Each pass adds sum(token NLL) / (assistant tokens in all passes), so the gradient is the
    per-token mean however the step was split, and long replies weigh per token, not per
    conversation (torchtune's normalisation).
    """
    n_targets = sum(p.n_targets for p in passes)
    return _backward_each(passes, device, amp,
                          lambda batch: summed_token_nll(model, batch, device) / n_targets)


def _accumulate_unlikelihood(model: Any, passes: list[MicroBatch], device: torch.device,
                             amp: torch.dtype | None, weight: float) -> float:
    """Add the gradient of weight x the per-pair mean unlikelihood over `passes`; return it."""
    rows = sum(p.input_ids.shape[0] for p in passes)
    return _backward_each(passes, device, amp,
                          lambda batch: weight * summed_unlikelihood(model, batch, device) / rows)


def _backward_each(passes: list[MicroBatch], device: torch.device, amp: torch.dtype | None,
                   loss_of: Callable[[MicroBatch], torch.Tensor]) -> float:
    """Backward `loss_of(pass)` for each pass under the run's autocast; the summed loss."""
    total = 0.0
    for batch in passes:
        with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            loss = loss_of(batch)
        loss.backward()
        total += float(loss.detach())
    return total


def _result_from_summary(out: Path, summary: dict[str, Any], *, reused: bool) -> TrainResult:
    return TrainResult(
        adapter_dir=out / ADAPTER, steps=summary["step"],
        trained_tokens=summary["trained_tokens"], useful_tokens=summary["useful_tokens"],
        padded_tokens=summary["padded_tokens"], final_loss=summary["final_loss"],
        losses=list(summary["losses"]), checkpoints=list_checkpoints(out),
        fingerprint=summary["fingerprint"], resumed_from_step=summary["resumed_from_step"],
        reused=reused, elapsed_s=0.0 if reused else summary["elapsed_s"],
        config=summary["config"])
