"""Benchmark: one CTRL curation round done three ways, same model, items, grid and seeds.

    flock /tmp/buckle-bench.lock .venv/bin/python bench/curation.py \\
        --items 5,10,20,40 --hf-items 10,20,40 --hf-batch all,16@40 --naive-items 5 \\
        --grid quick --max-new-tokens 128 --threads 1 \\
        --out docs/bench/curation.json

Each arm does the same work: for every item, one revision per (temperature, top_p) grid point
of the revision prompt (`CurationConfig.render_revision_prompt`, one user turn under the chat
template), nucleus sampling without top-k; then the BeamSearch bookkeeping (`clean_revision`,
drop empty / truncated / prompt echoes, dedupe per item) and scoring of the original and every
fresh candidate (perplexity of the response under the target model given the item's prompt, plus
the cheap text scorers). Arms:

  (a) naive: one `model.generate` per (item, grid point), `torch.manual_seed(sample_seed(...))`
      before each; one forward pass per candidate for perplexity;
  (b) plain transformers at its best: per grid point one left-padded batched `generate` over
      the items (length-sorted, in chunks of --hf-batch); perplexities in length-sorted,
      left-padded batches of 16 with mask-derived positions and `logits_to_keep`;
  (c) Buckle: `BeamSearch(rounds=1, beam=1).run(...)` on the `GenerationEngine`. It computes
      perplexity only for candidates that pass the quality floors (the floors never use it, so
      the curated result is the same); column `ppl` counts the perplexities each arm computed.

HF `generate` samples from the global RNG, so the arms draw different samples (the engine's
are seeded per request); counts of truncated / duplicate candidates therefore differ a little
between arms. Compare candidates generated per second (identical work) first, candidates scored
per second second.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from transformers import LogitsProcessor, LogitsProcessorList

from buckle.curation.config import CurationConfig
from buckle.curation.objective import QualityScorers
from buckle.curation.perplexity import encode_pair
from buckle.curation.search import BeamSearch, PromptEcho, clean_revision, sample_seed
from buckle.data import load_conversations
from buckle.data.records import Conversation
from buckle.data.sources import read_conversations
from buckle.generation.engine import GenerationEngine, encode_chat
from buckle.models import load_model

ALPACA = "alpaca:/work/shared/data/alpaca_5000.json"
GRIDS = {
    "quick": CurationConfig.preset("quick").grid,  # 2 x 2
    "paper": CurationConfig.preset("paper").grid,  # 5 x 5
}
HF_SCORE_BATCH = 16


@dataclass
class Sample:
    item: int
    point: int
    tokens: list[int]  # generated, without the stop token
    stopped: bool


@dataclass
class ArmResult:
    arm: str
    items: int
    generated: int = 0
    scored: int = 0  # fresh revisions scored (originals are scored too, in every arm)
    perplexities: int = 0  # forward-pass perplexities computed, originals included
    truncated_or_empty: int = 0
    echoes: int = 0
    duplicates: int = 0
    gen_tokens: int = 0
    seconds: float = 0.0
    gen_seconds: float = 0.0
    score_seconds: float = 0.0
    hf_batch: int | None = None
    repeat: int = 0  # which pass of --repeat (ratios pair arms of the same pass)
    load_before: float = 0.0
    load_after: float = 0.0
    peak_rss_mb: float = 0.0
    rates: dict[str, float] = field(default_factory=dict)
    # Generated tokens per (item, grid point), in BeamSearch's request order; not saved.
    tokens: list[list[int]] = field(default_factory=list, repr=False)

    def finish(self) -> ArmResult:
        self.load_after = os.getloadavg()[0]
        self.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.rates = {
            "generated_per_s": self.generated / self.seconds,
            "scored_per_s": self.scored / self.seconds,
            "gen_tok_per_s": self.gen_tokens / self.gen_seconds if self.gen_seconds else math.nan,
            "s_per_candidate": self.seconds / self.generated,
        }
        return self


# ---------------------------------------------------------------------- shared pieces
def load_items(source: str, n: int) -> list[Conversation]:
    if source == "alpaca":
        return list(read_conversations(ALPACA, limit=n, skip_invalid=True).conversations)
    return list(load_conversations(source, limit=n))


def revision_prompts(cfg: CurationConfig, tok: Any, items: list[Conversation]) -> list[list[int]]:
    """The prompt BeamSearch sends for round 1, member 0 (= the original response)."""
    return [encode_chat(tok, [{"role": "user",
                               "content": cfg.render_revision_prompt(c.prompt, c.response)}])
            for c in items]


def split_at_stop(row: list[int], stop: set[int]) -> tuple[list[int], bool]:
    for i, t in enumerate(row):
        if t in stop:
            return row[:i], True
    return row, False


def collect(tok: Any, cfg: CurationConfig, items: list[Conversation], samples: list[Sample],
            res: ArmResult) -> list[tuple[int, str]]:
    """BeamSearch._collect's rules: clean, drop empty/truncated and prompt echoes, dedupe per
    item."""
    seen = [{c.response.strip()} for c in items]
    echo = PromptEcho(cfg.revision_prompt) if cfg.drop_prompt_echoes else None
    fresh = []
    res.tokens = [s.tokens for s in samples]
    for s in samples:
        res.generated += 1
        res.gen_tokens += len(s.tokens) + s.stopped
        text = clean_revision(tok.decode(s.tokens, skip_special_tokens=True).strip())
        if not text or not s.stopped:
            res.truncated_or_empty += 1
            continue
        if echo is not None and echo(text, items[s.item].response):
            res.echoes += 1
            continue
        if text in seen[s.item]:
            res.duplicates += 1
            continue
        seen[s.item].add(text)
        fresh.append((s.item, text))
    res.scored = len(fresh)
    return fresh


def messages_of(conv: Conversation) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in conv.prompt_messages]


def text_scores(scorers: QualityScorers, items: list[Conversation],
                pairs: list[tuple[int, str]], ppl: list[float]) -> list[Any]:
    return [scorers.score(items[i].prompt, text, p) for (i, text), p in zip(pairs, ppl)]


def hf_generate(model: Any, tok: Any, prompts: list[list[int]], *, temperature: float,
                top_p: float, max_new: int, stop: set[int]) -> list[tuple[list[int], bool]]:
    """One left-padded sampling `generate` call; rows cut at their first stop token."""
    tok.padding_side = "left"
    enc = tok.pad({"input_ids": prompts}, return_tensors="pt")
    gen = model.generate(**enc, do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
                         max_new_tokens=max_new, pad_token_id=tok.pad_token_id,
                         eos_token_id=sorted(stop))
    return [split_at_stop(row, stop) for row in gen[:, enc["input_ids"].shape[1]:].tolist()]


# ---------------------------------------------------------------------- (a) naive
@torch.inference_mode()
def naive_perplexity(model: Any, tok: Any, messages: list[dict[str, str]], text: str,
                     stop: set[int]) -> float:
    ids, plen = encode_pair(tok, messages, text, stop)
    logits = model(input_ids=torch.tensor([ids])).logits[0, plen - 1:-1]
    return math.exp(float(F.cross_entropy(logits.float(), torch.tensor(ids[plen:]))))


@torch.inference_mode()
def run_naive(lm: Any, cfg: CurationConfig, items: list[Conversation], stop: set[int],
              scorers: QualityScorers) -> ArmResult:
    res = ArmResult("a_naive", len(items), load_before=os.getloadavg()[0])
    tok, model = lm.tokenizer, lm.model
    t0 = time.perf_counter()
    prompts = revision_prompts(cfg, tok, items)
    samples = []
    for i, ids in enumerate(prompts):
        for g, (temp, top_p) in enumerate(cfg.grid):
            torch.manual_seed(sample_seed(cfg.seed, i, 1, 0, g))
            [(row, stopped)] = hf_generate(model, tok, [ids], temperature=temp, top_p=top_p,
                                           max_new=cfg.max_new_tokens, stop=stop)
            samples.append(Sample(i, g, row, stopped))
    res.gen_seconds = time.perf_counter() - t0
    fresh = collect(tok, cfg, items, samples, res)
    pairs = [(i, c.response) for i, c in enumerate(items)] + fresh
    ppl = [naive_perplexity(model, tok, messages_of(items[i]), text, stop) for i, text in pairs]
    res.perplexities = len(pairs)
    text_scores(scorers, items, pairs, ppl)
    res.seconds = time.perf_counter() - t0
    res.score_seconds = res.seconds - res.gen_seconds
    return res.finish()


# ---------------------------------------------------------------------- (b) batched HF
@torch.inference_mode()
def hf_batched_perplexities(model: Any, tok: Any, rows: list[tuple[list[int], int]],
                            batch: int) -> list[float]:
    """Length-sorted left-padded batches; positions from the mask; logits only where scored."""
    out = [math.nan] * len(rows)
    order = sorted(range(len(rows)), key=lambda k: len(rows[k][0]))
    pad = tok.pad_token_id
    for b in range(0, len(order), batch):
        chunk = order[b:b + batch]
        width = max(len(rows[k][0]) for k in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, k in enumerate(chunk):
            seq = rows[k][0]
            ids[r, width - len(seq):] = torch.tensor(seq)
            mask[r, width - len(seq):] = 1
        resp = [len(rows[k][0]) - rows[k][1] for k in chunk]
        keep = max(resp) + 1
        logits = model(input_ids=ids, attention_mask=mask,
                       position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                       logits_to_keep=keep).logits
        for r, (k, n) in enumerate(zip(chunk, resp)):
            nll = F.cross_entropy(logits[r, keep - 1 - n:keep - 1].float(), ids[r, width - n:])
            out[k] = math.exp(float(nll))
    return out


@torch.inference_mode()
def run_hf_batched(lm: Any, cfg: CurationConfig, items: list[Conversation], stop: set[int],
                   scorers: QualityScorers, batch: int) -> ArmResult:
    res = ArmResult("b_hf_batched", len(items), hf_batch=batch, load_before=os.getloadavg()[0])
    tok, model = lm.tokenizer, lm.model
    t0 = time.perf_counter()
    prompts = revision_prompts(cfg, tok, items)
    order = sorted(range(len(items)), key=lambda i: len(prompts[i]))
    samples = []
    for g, (temp, top_p) in enumerate(cfg.grid):
        for start in range(0, len(order), batch):
            chunk = order[start:start + batch]
            torch.manual_seed(sample_seed(cfg.seed, start, 1, 0, g))
            rows = hf_generate(model, tok, [prompts[i] for i in chunk], temperature=temp,
                               top_p=top_p, max_new=cfg.max_new_tokens, stop=stop)
            samples += [Sample(i, g, row, stopped) for i, (row, stopped) in zip(chunk, rows)]
    return _score_hf(res, lm, cfg, items, samples, stop, scorers, t0)


def _score_hf(res: ArmResult, lm: Any, cfg: CurationConfig, items: list[Conversation],
              samples: list[Sample], stop: set[int], scorers: QualityScorers,
              t0: float) -> ArmResult:
    """Arms (b) and (b'): dedupe as BeamSearch does, then padded-batch perplexities."""
    tok, model = lm.tokenizer, lm.model
    samples.sort(key=lambda s: (s.item, s.point))  # BeamSearch's order, for identical dedupe
    res.gen_seconds = time.perf_counter() - t0
    fresh = collect(tok, cfg, items, samples, res)
    pairs = [(i, c.response) for i, c in enumerate(items)] + fresh
    rows = [encode_pair(tok, messages_of(items[i]), text, stop) for i, text in pairs]
    ppl = hf_batched_perplexities(model, tok, rows, HF_SCORE_BATCH)
    res.perplexities = len(rows)
    text_scores(scorers, items, pairs, ppl)
    res.seconds = time.perf_counter() - t0
    res.score_seconds = res.seconds - res.gen_seconds
    return res.finish()


# ---------------------------------------------------------------------- (b') row-wise HF
class RowwiseTemperatureTopP(LogitsProcessor):
    """HF's temperature + top-p warpers with one value per batch row (rows x grid in one call)."""

    def __init__(self, temperature: list[float], top_p: list[float]) -> None:
        self.temperature = torch.tensor(temperature).unsqueeze(-1)
        self.top_p = torch.tensor(top_p).unsqueeze(-1)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores / self.temperature
        sorted_logits, sorted_indices = torch.sort(scores, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - self.top_p)
        remove[..., -1:] = False
        return scores.masked_fill(remove.scatter(1, sorted_indices, remove), -float("inf"))


@torch.inference_mode()
def run_hf_rowwise(lm: Any, cfg: CurationConfig, items: list[Conversation], stop: set[int],
                   scorers: QualityScorers, batch: int) -> ArmResult:
    """Every (item, grid point) row in one left-padded `generate` (chunks of `batch` rows),
    per-row temperature / top-p through a custom LogitsProcessor; scoring as in (b)."""
    res = ArmResult("b_hf_rowwise", len(items), hf_batch=batch, load_before=os.getloadavg()[0])
    tok, model = lm.tokenizer, lm.model
    tok.padding_side = "left"
    t0 = time.perf_counter()
    prompts = revision_prompts(cfg, tok, items)
    order = sorted(((i, g) for i in range(len(items)) for g in range(len(cfg.grid))),
                   key=lambda r: (len(prompts[r[0]]), r))
    samples = []
    for start in range(0, len(order), batch):
        chunk = order[start:start + batch]
        enc = tok.pad({"input_ids": [prompts[i] for i, _ in chunk]}, return_tensors="pt")
        warp = RowwiseTemperatureTopP([cfg.grid[g][0] for _, g in chunk],
                                      [cfg.grid[g][1] for _, g in chunk])
        torch.manual_seed(sample_seed(cfg.seed, start, 1, 0, -1))
        gen = model.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                             logits_processor=LogitsProcessorList([warp]),
                             max_new_tokens=cfg.max_new_tokens, pad_token_id=tok.pad_token_id,
                             eos_token_id=sorted(stop))
        for (i, g), row in zip(chunk, gen[:, enc["input_ids"].shape[1]:].tolist()):
            samples.append(Sample(i, g, *split_at_stop(row, stop)))
    return _score_hf(res, lm, cfg, items, samples, stop, scorers, t0)


# ---------------------------------------------------------------------- (c) engine
def run_engine(lm: Any, cfg: CurationConfig, items: list[Conversation]) -> ArmResult:
    res = ArmResult("c_engine", len(items), load_before=os.getloadavg()[0])
    engine = GenerationEngine.from_loaded(lm)
    inner = engine.generate
    gen_time: list[float] = []
    outputs: list[Any] = []

    def timed_generate(*args: Any, **kwargs: Any) -> Any:  # instrument, do not change
        t = time.perf_counter()
        out = inner(*args, **kwargs)
        gen_time.append(time.perf_counter() - t)
        outputs.extend(out)
        return out

    engine.generate = timed_generate  # type: ignore[method-assign]
    search = BeamSearch(cfg, target_model=lm.model, target_tokenizer=lm.tokenizer, reviser=engine)
    perplexities = search._perplexities

    def counted(pairs: list[Any]) -> list[float]:  # instrument, do not change
        res.perplexities += len(pairs)
        return perplexities(pairs)

    search._perplexities = counted  # type: ignore[method-assign]
    t0 = time.perf_counter()
    curated = search.run(items, list(range(len(items))), list(range(1, len(items) + 1)))
    res.seconds = time.perf_counter() - t0
    res.gen_seconds = sum(gen_time)
    res.score_seconds = res.seconds - res.gen_seconds
    res.generated = len(outputs)
    res.tokens = [r.token_ids for r in outputs]
    res.gen_tokens = sum(len(r.token_ids) + (r.finish_reason == "stop") for r in outputs)
    logs = [log for c in curated for log in c.rounds]
    res.scored = sum(log.scored for log in logs)
    res.truncated_or_empty = sum(log.empty_or_truncated for log in logs)
    res.echoes = sum(log.echoes for log in logs)
    res.duplicates = sum(log.duplicates for log in logs)
    return res.finish()


# ---------------------------------------------------------------------- driver
def warm_up(lm: Any, cfg: CurationConfig, items: list[Conversation], stop: set[int]) -> None:
    """Allocator, thread pool and first-call paths of both code paths, unmeasured."""
    tiny = cfg.model_copy(update={"max_new_tokens": 4})
    run_engine(lm, tiny, items[:2])
    prompts = revision_prompts(tiny, lm.tokenizer, items[:2])
    with torch.inference_mode():
        hf_generate(lm.model, lm.tokenizer, prompts, temperature=0.8, top_p=0.9, max_new=4,
                    stop=stop)


def fmt_row(r: ArmResult) -> str:
    batch = f" b={r.hf_batch}" if r.hf_batch else ""
    return (f"{r.arm + batch:<20}{r.items:>6}{r.generated:>6}{r.scored:>7}{r.perplexities:>5}"
            f"{r.gen_tokens:>8}"
            f"{r.seconds:>9.1f}{r.gen_seconds:>8.1f}{r.score_seconds:>8.1f}"
            f"{r.rates['generated_per_s']:>9.3f}{r.rates['scored_per_s']:>9.3f}"
            f"{r.rates['gen_tok_per_s']:>8.1f}{r.load_before:>6.2f}{r.load_after:>6.2f}")


HEADER = (f"{'arm':<20}{'items':>6}{'gen':>6}{'scored':>7}{'ppl':>5}{'tokens':>8}{'sec':>9}"
          f"{'gen s':>8}"
          f"{'score s':>8}{'gen/s':>9}{'scor/s':>9}{'tok/s':>8}{'ld0':>6}{'ld1':>6}")


def ratios(results: list[ArmResult]) -> list[dict[str, Any]]:
    """Engine vs each other arm at the same item count, within the same repeat."""
    out = []
    for c in (r for r in results if r.arm == "c_engine"):
        for o in (r for r in results if r.arm != "c_engine" and r.items == c.items
                  and r.repeat == c.repeat):
            out.append({"items": c.items, "vs": o.arm, "hf_batch": o.hf_batch,
                        "repeat": c.repeat, "wall_s": _ratio(o.seconds, c.seconds),
                        **{k: _ratio(c.rates[k], o.rates[k])
                           for k in ("generated_per_s", "scored_per_s", "gen_tok_per_s")}})
    return out


def _ratio(a: float, b: float) -> float:
    """a / b, NaN when the baseline did none of it (e.g. every candidate truncated)."""
    return a / b if b else math.nan


def identical_samples(results: list[ArmResult]) -> list[dict[str, Any]]:
    """How many (item, grid point) samples came out token-identical to the engine's.

    The engine draws by inverse CDF from one uniform per step (sampler v2), HF's `generate`
    with `multinomial`; the same seed gives the same sample only where the nucleus is one
    token (low temperature or top-p), which is what this counts.
    """
    out = []
    for c in (r for r in results if r.arm == "c_engine" and r.repeat == 0):
        for o in (r for r in results if r.arm != "c_engine" and r.items == c.items
                  and r.repeat == 0):
            same = sum(a == b for a, b in zip(o.tokens, c.tokens))
            out.append({"items": c.items, "arm": o.arm, "hf_batch": o.hf_batch,
                        "identical": same, "samples": len(c.tokens)})
    return out


def ratio_medians(results: list[ArmResult]) -> list[dict[str, Any]]:
    """Median and spread over --repeat passes of each paired ratio (this VM's speed drifts by
    tens of percent between minutes, so one pair of runs can land anywhere in that range)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in ratios(results):
        groups.setdefault((r["items"], r["vs"], r["hf_batch"]), []).append(r)
    out = []
    for (items, vs, batch), rs in groups.items():
        wall = sorted(r["wall_s"] for r in rs)
        out.append({"items": items, "vs": vs, "hf_batch": batch, "repeats": len(rs),
                    "wall_s_median": statistics.median(wall), "wall_s_all": wall,
                    "scored_per_s_median": statistics.median(r["scored_per_s"] for r in rs),
                    "gen_tok_per_s_median": statistics.median(r["gen_tok_per_s"] for r in rs)})
    return out


def hf_batches(spec: str, n: int, rows: int | None = None) -> list[int]:
    """Batch sizes to try at n items (`rows` per call at most, default n): 'all', 'B' or 'B@N'
    (B only at N items)."""
    rows = n if rows is None else rows
    sizes = []
    for part in spec.split(","):
        batch, _, only = part.partition("@")
        if only and int(only) != n:
            continue
        size = rows if batch == "all" else min(int(batch), rows)
        if size not in sizes:
            sizes.append(size)
    return sizes


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def save(args: argparse.Namespace, cfg: CurationConfig, results: list[ArmResult]) -> None:
    if not args.out:
        return
    meta = {"command": "bench/curation.py", "args": vars(args), "grid": cfg.grid,
            "config": json.loads(cfg.to_json()), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "machine": platform.machine(),
            "processor": platform.processor(), "cpus": os.cpu_count(),
            "hf_score_batch": HF_SCORE_BATCH}
    rows = [{k: v for k, v in asdict(r).items() if k != "tokens"} for r in results]
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": rows, "ratios": ratios(results),
                   "ratio_medians": ratio_medians(results),
                   "same_samples": identical_samples(results)}, f, indent=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--source", default="chatterbot", help="chatterbot or alpaca")
    ap.add_argument("--items", type=ints, default=[10, 20, 40], help="sizes for (c)")
    ap.add_argument("--hf-items", type=ints, default=None, help="sizes for (b); default --items")
    ap.add_argument("--naive-items", type=int, default=10,
                    help="size for (a); 0 skips it (add it to --items to compare like for like)")
    ap.add_argument("--hf-batch", default="16,all",
                    help="generate batch sizes tried for (b): 'all' (every item in one call), "
                    "'B', or 'B@N' (B only at N items), comma-separated")
    ap.add_argument("--rowwise-items", type=ints, default=[],
                    help="sizes for (b'): all items x grid points per generate call")
    ap.add_argument("--rowwise-batch", default="all",
                    help="rows per (b') generate call, same syntax as --hf-batch")
    ap.add_argument("--grid", choices=sorted(GRIDS), default="quick")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1,
                    help="run every arm this many times, interleaved; ratios pair arms of the "
                    "same pass and the summary gives their median")
    ap.add_argument("--out", default=None, help="JSON results path")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    temps = tuple(sorted({t for t, _ in GRIDS[args.grid]}))
    tops = tuple(sorted({p for _, p in GRIDS[args.grid]}))
    cfg = CurationConfig(rounds=1, beam=1, temperatures=temps, top_ps=tops,
                         max_new_tokens=args.max_new_tokens, seed=args.seed)
    lm = load_model(args.model)
    stop = {int(t) for t in GenerationEngine.from_loaded(lm).stop_ids.tolist()}
    scorers = QualityScorers.from_config(cfg)
    hf_sizes = args.hf_items if args.hf_items is not None else args.items
    pool = load_items(args.source,
                      max([*args.items, *hf_sizes, *args.rowwise_items, args.naive_items]))
    warm_up(lm, cfg, pool, stop)

    print(f"model={args.model} source={args.source} grid={args.grid} ({len(cfg.grid)} points) "
          f"max_new_tokens={args.max_new_tokens} threads={torch.get_num_threads()} "
          f"torch={torch.__version__}")
    print(HEADER, flush=True)
    results: list[ArmResult] = []

    def record(r: ArmResult) -> None:
        results.append(r)
        print(fmt_row(r), flush=True)
        save(args, cfg, results)  # after every arm, so a long run leaves partial results

    for rep in range(args.repeat):
        arms: list[Callable[[], ArmResult]] = []
        if args.naive_items:
            arms.append(partial(run_naive, lm, cfg, pool[:args.naive_items], stop, scorers))
        for n in sorted(set(args.items) | set(hf_sizes) | set(args.rowwise_items)):
            items = pool[:n]
            if n in args.items:
                arms.append(partial(run_engine, lm, cfg, items))
            if n in hf_sizes:
                arms += [partial(run_hf_batched, lm, cfg, items, stop, scorers, size)
                         for size in hf_batches(args.hf_batch, n)]
            if n in args.rowwise_items:
                arms += [partial(run_hf_rowwise, lm, cfg, items, stop, scorers, size)
                         for size in hf_batches(args.rowwise_batch, n, n * len(cfg.grid))]
        for arm in arms:
            result = arm()
            result.repeat = rep
            record(result)

    for s in identical_samples(results):
        batch = f" (batch {s['hf_batch']})" if s["hf_batch"] else ""
        print(f"identical samples, {s['arm']}{batch} vs c_engine at {s['items']} items: "
              f"{s['identical']}/{s['samples']}")
    for r in ratios(results):
        batch = f" (batch {r['hf_batch']})" if r["hf_batch"] else ""
        print(f"engine vs {r['vs']}{batch} at {r['items']} items, pass {r['repeat']}: "
              f"{r['wall_s']:.2f}x wall time, "
              f"{r['scored_per_s']:.2f}x candidates scored/s, {r['gen_tok_per_s']:.2f}x tok/s")
    for m in ratio_medians(results):
        if m["repeats"] > 1:
            batch = f" (batch {m['hf_batch']})" if m["hf_batch"] else ""
            print(f"engine vs {m['vs']}{batch} at {m['items']} items, median of {m['repeats']}: "
                  f"{m['wall_s_median']:.2f}x wall time (all: "
                  + ", ".join(f"{w:.2f}" for w in m["wall_s_all"]) + ")")


if __name__ == "__main__":
    main()
