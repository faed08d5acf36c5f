"""Batched generation engine: chat template, left padding, per-row sampling, EOS stop.

Why not just `model.generate`? On CPU, decoding a small model is bound by per-step overhead, not
FLOPs: plain batched `generate` reaches ~25% of what a forward pass sustains. This engine
(1) sorts requests by prompt length so a batch wastes little padding, (2) runs large batches,
(3) drops finished rows from the batch and the KV cache at once instead of decoding padding
until the longest row ends, (4) crops left-padding columns that no live row needs,
(5) computes logits only for the last position during prefill, and (6) prefills a prefix
shared by every row (the chat template's system prompt) once and shares its KV cache across the
batch, and (7) prefills identical prompts (one curation prompt sampled over a temperature x top-p
grid) once, expanding their KV cache to every sample by index, and decodes rows with identical
histories once until their draws differ; the row cap counts distinct prompts, so a whole grid
decodes in one batch (a CPU decode step is mostly reading the weights), and (8) batches
continuously: when requests finish, queued prompts are prefilled and merged into the running
batch, so a long sample no longer decodes alone while the rest of the work waits for it, and
(9) decodes in bf16 where the CPU multiplies it natively (`precision="auto"`, precision.py),
or, opt-in on x86 CPUs without it, with dynamic-int8 linears (`precision="int8"`),
with grouped-query decode attention that avoids a slow SDPA path (attention.py), and (10)
appends each step's keys and values in place (kv_cache.py) instead of copying the whole cache.
In fp32, greedy output is identical to one-prompt-at-a-time decoding (tested), so speed never
changes what an evaluation measures; in bf16 most replies are identical to fp32 and the rest
differ by rounding (how many, and how many judge verdicts move: bench/generation.py), so code
that needs bit-exact, batch-independent replies passes `precision="fp32"`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from buckle.generation.attention import decode_attention_for
from buckle.generation.kv_cache import HeadroomCache
from buckle.generation.precision import decode_dtype, decoding_in
from buckle.generation.prefill import forward_shared_prefix
from buckle.generation.sampling import SamplingParams, next_tokens

Messages = list[dict[str, str]]
DEFAULT_PARAMS = SamplingParams()  # greedy, 128 new tokens


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (EOS) or "length"
    prompt_tokens: int


def stop_token_ids(tokenizer: Any, model: Any) -> set[int]:
    """EOS ids from the tokenizer and generation config (ChatML models end turns with <|im_end|>)."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id,
                   getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(i) for i in source)
    for tok in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid is not None:
            ids.add(tid)
    return ids


def cache_argument_name(model: Any) -> str:
    """transformers 5.x renamed `past_key_values` to `cache`; support both."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def encode_chat(tokenizer: Any, messages: Messages, add_generation_prompt: bool = True) -> list[int]:
    """Token ids of a conversation under the model's own chat template."""
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                        tokenize=True)
    if hasattr(out, "keys") and "input_ids" in out:
        out = out["input_ids"]
    return list(out)


@dataclass
class EngineStats:
    """What the last `generate` call did (for benchmarks and tests)."""

    steps: int = 0  # decode steps (one model call each)
    prefills: int = 0  # prefill passes (one per admission of new prompts)
    joins: int = 0  # admissions into a batch that was still decoding
    peak_requests: int = 0  # requests in flight at once
    peak_rows: int = 0  # physical rows in one decode step


@dataclass
class _Live:
    """The running batch: physical rows (KV cache, mask, next positions, last logits) and the
    requests decoding on them (`phys[r]` = physical row of request slot r)."""

    cache: Any
    mask: torch.Tensor  # [physical rows, cache width]
    next_pos: torch.Tensor  # [physical rows, 1]
    logits: torch.Tensor  # [physical rows, vocab], in the decode dtype (sampling widens it)
    phys: list[int]
    requests: list[int]  # index of each slot's request in the generate() call
    prompts: list[tuple[int, ...]]
    need: list[int]  # prompt + max new tokens, for the token budget
    temperature: torch.Tensor
    top_p: torch.Tensor
    remaining: torch.Tensor  # new tokens each request may still draw
    generators: list[torch.Generator | None]
    tokens: list[list[int]]  # drawn so far

    def keep(self, slots: list[int]) -> None:
        """Retire every request slot not in `slots` (physical rows are regrouped after)."""
        index = torch.tensor(slots, device=self.temperature.device)
        self.temperature, self.top_p = self.temperature[index], self.top_p[index]
        self.remaining = self.remaining[index]
        for name in ("phys", "requests", "prompts", "need", "generators", "tokens"):
            values = getattr(self, name)
            setattr(self, name, [values[r] for r in slots])

    def merge(self, other: _Live) -> _Live:
        """Append `other`'s rows and requests; the narrower cache is left-padded (masked) to
        the wider one's width, so every row keeps its own positions and attention."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, width), _left_pad(theirs.keys, width)])
            mine.values = torch.cat([_left_pad(mine.values, width),
                                     _left_pad(theirs.values, width)])
        self.mask = torch.cat([F.pad(self.mask, (width - self.mask.shape[1], 0)),
                               F.pad(other.mask, (width - other.mask.shape[1], 0))])
        rows = self.logits.shape[0]
        self.next_pos = torch.cat([self.next_pos, other.next_pos])
        self.logits = torch.cat([self.logits, other.logits])
        self.phys = self.phys + [rows + p for p in other.phys]
        self.temperature = torch.cat([self.temperature, other.temperature])
        self.top_p = torch.cat([self.top_p, other.top_p])
        self.remaining = torch.cat([self.remaining, other.remaining])
        for name in ("requests", "prompts", "need", "generators", "tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


def _left_pad(kv: torch.Tensor, width: int) -> torch.Tensor:
    """[rows, heads, seq, dim] -> seq = width, zeros on the left (masked out)."""
    return F.pad(kv, (0, 0, width - kv.shape[2], 0)) if kv.shape[2] < width else kv


class GenerationEngine:
    """Generate for many requests at once. Construct once per (model, tokenizer)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_size: int = 128,
        max_batch_tokens: int = 65_536,
        min_shared_prefix: int = 4,
        share_rows: bool = True,
        continuous: bool = True,
        precision: str | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.min_shared_prefix = min_shared_prefix
        self.share_rows = share_rows  # False: one physical row per request (for benchmarks)
        self.continuous = continuous  # False: a batch admits nothing until it is done (benchmarks)
        # auto | fp32 | bf16 | int8 (None: $BUCKLE_GENERATION_PRECISION, else auto); see precision.py
        self.dtype = decode_dtype(model, precision)
        self.device = next(model.parameters()).device
        self.stop_ids = torch.tensor(sorted(stop_token_ids(tokenizer, model)), device=self.device)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else int(self.stop_ids[0])
        self._cache_kw = cache_argument_name(model)
        self.stats = EngineStats()

    @classmethod
    def from_loaded(cls, loaded: Any, **kwargs: Any) -> GenerationEngine:
        return cls(loaded.model, loaded.tokenizer, **kwargs)

    # ----------------------------------------------------------------- public API
    def chat(
        self,
        conversations: Sequence[Messages],
        params: SamplingParams | Sequence[SamplingParams] = DEFAULT_PARAMS,
        *,
        progress: bool | str = False,
    ) -> list[str]:
        """Reply to each conversation; returns the assistant texts in input order."""
        prompts = [encode_chat(self.tokenizer, conv) for conv in conversations]
        return [r.text for r in self.generate(prompts, params, progress=progress)]

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams | Sequence[SamplingParams] = DEFAULT_PARAMS,
        *,
        progress: bool | str = False,
        on_result: Callable[[int, GenerationResult], None] | None = None,
    ) -> list[GenerationResult]:
        """Generate for token-id prompts; results come back in input order."""
        if isinstance(params, SamplingParams):
            params = [params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling params")
        results: list[GenerationResult | None] = [None] * len(prompts)
        bar = tqdm(total=len(prompts), desc=progress if isinstance(progress, str) else "generate",
                   disable=not progress, unit="seq", dynamic_ncols=True)
        self.stats = EngineStats()
        queue = self._queue(prompts)
        live: _Live | None = None
        with torch.inference_mode(), decoding_in(self.model, self.dtype), \
                decode_attention_for(self.model):
            while queue or live is not None:
                live = self._admit(queue, live, prompts, params)
                live, finished = self._step(live, prompts)
                for idx, res in finished:
                    results[idx] = res
                    bar.update(1)
                    if on_result is not None:
                        on_result(idx, res)
        bar.close()
        return results  # type: ignore[return-value]

    # ----------------------------------------------------------------- internals
    @staticmethod
    def _queue(prompts: Sequence[Sequence[int]]) -> deque[int]:
        """Request order: shortest prompt first (little padding), requests of one prompt
        together (they are prefilled once and share physical rows)."""
        first: dict[tuple[int, ...], int] = {}
        for i, p in enumerate(prompts):
            first.setdefault(tuple(p), i)
        return deque(sorted(range(len(prompts)),
                            key=lambda i: (len(prompts[i]), first[tuple(prompts[i])], i)))

    def _admit(self, queue: deque[int], live: _Live | None, prompts: Sequence[Sequence[int]],
               params: Sequence[SamplingParams]) -> _Live | None:
        """Move queued requests into the running batch while the caps allow (continuous
        batching), prefill them and merge them in.

        Caps, on the requests in flight: `max_batch_size` distinct prompts (the 25 grid points
        of one curation prompt start as one physical row; on a CPU a decode step is mostly
        reading the weights, SmolLM2-135M: 102 ms at 1 row, 156 ms at 8, so more requests per
        step are nearly free), and `max_batch_tokens` = requests x the widest (prompt + new
        tokens), which bounds the KV cache even if every row forks. While requests are running,
        only whole prompt groups join (a prefill costs about a decode step, so one is not spent
        per freed row); the first request always runs, even alone over the budget.
        """
        if not queue or (live is not None and not self.continuous):
            return live
        rows = len(live.requests) if live is not None else 0
        widest = max(live.need) if live is not None else 0
        distinct = set(live.prompts) if live is not None else set()
        taken: list[int] = []
        while queue:
            key = tuple(prompts[queue[0]])
            group = 0  # queued requests of this prompt (contiguous in the queue)
            while group < len(queue) and tuple(prompts[queue[group]]) == key:
                group += 1
            need = max(len(key) + params[queue[k]].max_new_tokens for k in range(group))
            fits = ((key in distinct or len(distinct) < self.max_batch_size)
                    and (rows + group) * max(widest, need) <= self.max_batch_tokens)
            if not fits:
                if rows:
                    break
                # Nothing runs yet: take as many of this prompt's requests as fit (at least 1).
                group = max(1, min(group, self.max_batch_tokens // max(widest, need)))
                need = max(len(key) + params[queue[k]].max_new_tokens for k in range(group))
            taken += [queue.popleft() for _ in range(group)]
            rows, widest = rows + group, max(widest, need)
            distinct.add(key)
            if not fits:
                break
        if not taken:
            return live
        fresh = self._prefill(taken, prompts, params)
        if live is None:
            return fresh
        self.stats.joins += 1
        return live.merge(fresh)

    def _prefill(self, taken: list[int], prompts: Sequence[Sequence[int]],
                 params: Sequence[SamplingParams]) -> _Live:
        """Prefill the distinct prompts of `taken` once each (logits for the last position only;
        a prefix every row shares runs once) and map every request onto its prompt's row."""
        dev = self.device
        slot: dict[tuple[int, ...], int] = {}
        phys = [slot.setdefault(tuple(prompts[i]), len(slot)) for i in taken]
        unique = [list(p) for p in slot]
        batch = forward_shared_prefix(
            self.model, unique, pad_id=self.pad_id, cache_kw=self._cache_kw, device=dev,
            max_shared=min(len(p) for p in unique) - 1,  # every row keeps >= 1 token
            logits_to_keep=1, min_shared=self.min_shared_prefix, keep_cache=True,
            new_cache=HeadroomCache)
        self.stats.prefills += 1
        chosen = [params[i] for i in taken]
        return _Live(
            cache=batch.cache, mask=batch.mask, next_pos=batch.positions[:, -1:] + 1,
            logits=batch.logits[:, -1], phys=phys, requests=list(taken),
            prompts=[tuple(prompts[i]) for i in taken],
            need=[len(prompts[i]) + p.max_new_tokens for i, p in zip(taken, chosen)],
            temperature=torch.tensor([p.temperature for p in chosen], device=dev),
            top_p=torch.tensor([p.top_p for p in chosen], device=dev),
            remaining=torch.tensor([p.max_new_tokens for p in chosen], device=dev),
            generators=[self._generator(p) for p in chosen],
            tokens=[[] for _ in taken])

    def _step(self, live: _Live | None, prompts: Sequence[Sequence[int]]
              ) -> tuple[_Live | None, list[tuple[int, GenerationResult]]]:
        """Sample one token for every request in flight, retire finished ones, and run the
        model on the survivors (their logits are the next step's input)."""
        if live is None:
            return None, []
        dev = self.device
        phys = live.phys
        rows = live.logits if phys == list(range(live.logits.shape[0])) \
            else live.logits[torch.tensor(phys, device=dev)]
        tok = next_tokens(rows, live.temperature, live.top_p, live.generators)
        self.stats.steps += 1
        self.stats.peak_requests = max(self.stats.peak_requests, len(live.requests))
        self.stats.peak_rows = max(self.stats.peak_rows, live.logits.shape[0])
        live.remaining = live.remaining - 1
        is_stop = torch.isin(tok, self.stop_ids)
        done = is_stop | (live.remaining <= 0)
        tok_list, done_list, stop_list = tok.tolist(), done.tolist(), is_stop.tolist()
        finished = []
        for r, request in enumerate(live.requests):
            if not stop_list[r]:
                live.tokens[r].append(tok_list[r])
            if done_list[r]:
                finished.append((request, self._result(live.tokens[r], len(prompts[request]),
                                                       "stop" if stop_list[r] else "length")))
        keep = [r for r, d in enumerate(done_list) if not d]
        if not keep:
            return None, finished
        if len(keep) < len(live.requests):
            live.keep(keep)
        # Regroup: one physical row per (parent physical row, drawn token). Rows with identical
        # histories (one curation prompt sampled over a whole grid; low temperature or top-p
        # keeps samples together for many steps) share one physical row: its logits are
        # computed once and every request samples from them with its own temperature, top-p
        # and seed. A row forks (copy-on-write of its KV by index) only when its requests draw
        # different tokens, so the samples are exactly those of decoding every request alone.
        group: dict[tuple[int, int, int], int] = {}
        live.phys = [group.setdefault((phys[r], tok_list[r], 0 if self.share_rows else r),
                                      len(group)) for r in keep]
        parents = [parent for parent, _, _ in group]
        step_tokens = torch.tensor([t for _, t, _ in group], device=dev)
        mask, next_pos = live.mask, live.next_pos
        if parents != list(range(live.logits.shape[0])):
            index = torch.tensor(parents, device=dev)
            live.cache.batch_select_indices(index)
            mask, next_pos = mask[index], next_pos[index]
            mask = self._crop_left_padding(live.cache, mask)
        live.mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        live.logits = self.model(input_ids=step_tokens.unsqueeze(-1), attention_mask=live.mask,
                                 position_ids=next_pos, use_cache=True,
                                 **{self._cache_kw: live.cache}).logits[:, -1]
        live.next_pos = next_pos + 1
        return live, finished

    @staticmethod
    def _crop_left_padding(cache: Any, mask: torch.Tensor) -> torch.Tensor:
        """Drop leading columns that are padding for every remaining row (saves attention work)."""
        live_cols = mask.any(dim=0).nonzero()
        first = int(live_cols[0]) if live_cols.numel() else 0
        if first == 0:
            return mask
        for layer in cache.layers:
            layer.crop_left(first)
        return mask[:, first:]

    def _generator(self, params: SamplingParams) -> torch.Generator | None:
        if params.greedy:
            return None
        gen = torch.Generator(device=self.device)
        gen.manual_seed(params.seed if params.seed is not None else torch.seed())
        return gen

    def _result(self, tokens: list[int], prompt_len: int, reason: str) -> GenerationResult:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return GenerationResult(text=text, token_ids=list(tokens), finish_reason=reason,
                                prompt_tokens=prompt_len)
