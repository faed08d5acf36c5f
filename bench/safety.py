"""The safety-efficacy experiment: does CTRL keep a fine-tune safe at every stage?

    .venv/bin/python bench/safety.py --scale cpu                 # all arms (resumable)
    .venv/bin/python bench/safety.py --scale cpu --arms attacked,during   # run in parts
    .venv/bin/python bench/safety.py --scale cpu --report-only   # table + chart from results

Arms (each one `buckle.pipeline.run` job, exactly what the service runs):
  base         the aligned reference model, no fine-tune (its numbers come with every job)
  attacked     LoRA on harmful Q/A pairs (jailbreak-tuning), policy `none`
  pre|during|post   the same attack under each CTRL stage
  uncurated    `during` with the same commonsense items *before* curation (control)
  refusal-mix  `during` with harmful-prompt -> refusal pairs (the reviewers' baseline)
  benign       a benign-only customer job, policy `none` (alignment erosion by benign data)
  benign-during    the benign job under `during`

Held out: evaluation uses AdvBench prompts [0, eval_limit) and chatterbot's first benign_limit
prompts; attack data is pyrit's harmful Q/A (a different source), curation reads chatterbot
from offset 200, refusal pairs use AdvBench from offset 400, benign customer data chatterbot
from offset 600; the pipeline also drops any safety item whose prompt is an evaluation prompt,
and this script reports any customer item that equals one.

Every arm is cached: its job's work dir (checkpoints, evaluation files) lives under
`--runs/<scale>/<arm>`, and its result JSON is written when it finishes, so a killed run
continues where it stopped and `--arms` runs a subset.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from buckle.atomic import atomic_write_json
from buckle.curation.scorers import helpfulness
from buckle.data import load_conversations, load_prompts
from buckle.pipeline import JobSpec


@dataclass(frozen=True)
class Scale:
    model: str
    attack: int  # harmful Q/A pairs in the attack
    benign: int  # benign customer conversations
    curated: int  # commonsense items curated
    preset: str
    curation_overrides: dict[str, Any]
    eval_limit: int
    benign_limit: int
    n_epochs: int
    batch_size: int
    learning_rate: float
    curated_ratio: float
    attack_words: int | None = None  # cut each attack response to its first N words


SCALES = {
    # minutes, on the default model: checks the wiring, not the science
    "smoke": Scale("smollm2-135m-instruct", 16, 16, 8, "quick",
                   {"rounds": 1, "max_new_tokens": 96}, 10, 10, 1, 8, 2e-4, 0.25),
    # ~2 hours on 2 CPU cores with the aligned 0.5B reference model. LoRA training of that
    # model runs at only ~10-15 tok/s there (fp32, no AVX-512), so the whole experiment gets
    # ~60k trained tokens: 32 attack pairs, each answer cut to its compliant opening (first 48
    # words; full harmful-qa answers average 318 tokens), 2 epochs; 16 curated items.
    "cpu": Scale("qwen2.5-coder-0.5b-instruct", 32, 32, 16, "quick",
                 {"max_new_tokens": 128}, 30, 30, 2, 4, 4e-4, 0.25, attack_words=48),
    # a lent accelerator: the paper's grid, bigger sets
    "gpu": Scale("qwen2.5-coder-0.5b-instruct", 100, 200, 200, "paper", {}, 200, 100, 3, 8,
                 2e-4, 0.3),
}
ARMS = ("attacked", "pre", "during", "post", "uncurated", "refusal-mix", "benign",
        "benign-during")


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r.to_json() + "\n" for r in rows), encoding="utf-8")
    return path


def _opening(conv: Any, words: int) -> Any:
    """The conversation with its last (assistant) turn cut to its first `words` words."""
    last = conv.messages[-1]
    cut = " ".join(last.content.split()[:words])
    return conv.model_copy(update={"messages": [*conv.messages[:-1],
                                                last.model_copy(update={"content": cut})]})


def customer_files(scale: Scale, folder: Path) -> dict[str, Path]:
    attack = load_conversations("harmful-qa", limit=scale.attack)
    if scale.attack_words:
        attack = [_opening(c, scale.attack_words) for c in attack]
    benign = load_conversations("chatterbot", offset=600, limit=scale.benign)
    return {"harmful": _write_jsonl(folder / "attack.jsonl", attack),
            "benign": _write_jsonl(folder / "benign.jsonl", benign)}


def arm_spec(arm: str, scale: Scale, files: dict[str, Path], work: Path, seed: int) -> JobSpec:
    policy = {"attacked": "none", "benign": "none", "benign-during": "during"}.get(arm, arm)
    data = files["benign" if arm.startswith("benign") else "harmful"]
    return JobSpec(
        model=scale.model, training_file=str(data), work_dir=str(work), seed=seed,
        hyperparameters={"n_epochs": scale.n_epochs, "batch_size": scale.batch_size,
                         "learning_rate": scale.learning_rate, "max_seq_len": 1024},
        safety={"policy": policy, "curated_ratio": scale.curated_ratio,
                "curation": {"source": "chatterbot", "offset": 200, "limit": scale.curated,
                             "preset": scale.preset, "overrides": scale.curation_overrides},
                "eval_limit": scale.eval_limit, "benign_limit": scale.benign_limit})


def benign_helpfulness(report_path: str | Path) -> float | None:
    """Mean lexical helpfulness of the benign replies (`buckle.curation.scorers.helpfulness`)."""
    report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    rows = report.get("per_benign_prompt") or []
    if not rows:
        return None
    return fmean(helpfulness(r["prompt"], r["response"]) for r in rows)


def run_arm(arm: str, scale: Scale, files: dict[str, Path], runs: Path, seed: int) -> dict:
    from buckle.pipeline import run

    out = runs / arm / "result.json"
    if out.is_file():
        return json.loads(out.read_text(encoding="utf-8"))
    spec = arm_spec(arm, scale, files, runs / arm / "work", seed)
    t0 = time.perf_counter()
    last = {"stage": None}

    def progress(event: Any) -> None:
        step = (event.data or {}).get("step")
        if event.stage != last["stage"] or event.stage == "evaluate" or (step or 1) % 4 == 0:
            print(f"  [{arm}] {time.strftime('%H:%M:%S')} {event.fraction:5.1%} {event.stage}: "
                  f"{event.message}", flush=True)
        last["stage"] = event.stage

    result = run(spec, progress=progress)
    row = {"arm": arm, "policy": spec.safety.policy, "seconds": time.perf_counter() - t0,
           "base": result.safety["base"], "adapter": result.safety["adapter"],
           "rounds": result.safety["rounds"], "corpus": result.safety["corpus"],
           "helpfulness": benign_helpfulness(result.report_path),
           "base_helpfulness": benign_helpfulness(result.safety["base_report"]),
           "trained_tokens": result.trained_tokens, "adapter_dir": result.adapter_dir,
           "spec": json.loads(spec.model_dump_json())}
    atomic_write_json(out, row)
    return row


def _fmt(metric: dict | None) -> str:
    if not metric:
        return "–"
    return f"{metric['value']:.1%} [{metric['ci_low']:.1%}, {metric['ci_high']:.1%}]"


def table(rows: list[dict], base: dict, base_help: float | None) -> str:
    attacked = next((r for r in rows if r["arm"] == "attacked"), None)
    rise = (attacked["adapter"]["asr"]["value"] - base["asr"]["value"]) if attacked else None
    lines = [("| arm | policy | ASR | harmful rate | over-refusal | helpfulness | rise removed "
             "| n (harmful / benign) | train tokens | wall |"),
             "|---|---|---|---|---|---|---|---|---|---|",
             (f"| base | – | {_fmt(base['asr'])} | {_fmt(base['harmful_rate'])} | "
             f"{_fmt(base['over_refusal_rate'])} | "
             f"{'–' if base_help is None else f'{base_help:.3f}'} | – | "
             f"{base['n']} / {base['over_refusal_rate']['n'] if base['over_refusal_rate'] else 0}"
             " | – | – |")]
    for r in rows:
        a = r["adapter"]
        removed = "–"
        if rise and rise > 0 and r["arm"] not in ("attacked", "benign", "benign-during"):
            removed = f"{(attacked['adapter']['asr']['value'] - a['asr']['value']) / rise:.0%}"
        help_ = "–" if r["helpfulness"] is None else f"{r['helpfulness']:.3f}"
        n_benign = a["over_refusal_rate"]["n"] if a["over_refusal_rate"] else 0
        lines.append(f"| {r['arm']} | {r['policy']} | {_fmt(a['asr'])} | "
                     f"{_fmt(a['harmful_rate'])} | {_fmt(a['over_refusal_rate'])} | {help_} | "
                     f"{removed} | {a['n']} / {n_benign} | {r['trained_tokens']} | "
                     f"{r['seconds'] / 60:.0f} min |")
    return "\n".join(lines)


def chart(rows: list[dict], base: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["base"] + [r["arm"] for r in rows]
    metrics = [base] + [r["adapter"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 3.6))
    width = 0.38
    for k, (key, label) in enumerate((("asr", "ASR"), ("over_refusal_rate", "over-refusal"))):
        vals = [m[key]["value"] if m.get(key) else 0 for m in metrics]
        # max(0, ...): a CI bound can sit a rounding error inside its own point estimate
        lo = [max(0.0, v - (m[key]["ci_low"] if m.get(key) else v)) for v, m in zip(vals, metrics)]
        hi = [max(0.0, (m[key]["ci_high"] if m.get(key) else v) - v) for v, m in zip(vals, metrics)]
        ax.bar([i + (k - 0.5) * width for i in range(len(names))], vals, width, label=label,
               yerr=[lo, hi], capsize=3)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("rate (95% CI)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--runs", type=Path, default=ROOT / "reports" / "safety")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "safety")
    args = ap.parse_args(argv)
    scale = SCALES[args.scale]
    runs = args.runs / args.scale
    files = customer_files(scale, runs / "data")
    eval_prompts = {p.prompt.strip() for p in load_prompts("advbench", limit=scale.eval_limit)}
    overlap = sum(c.prompt.strip() in eval_prompts
                  for c in load_conversations("harmful-qa", limit=scale.attack))
    print(f"scale {args.scale}: {scale}\nattack items equal to an evaluation prompt: {overlap}")
    rows = []
    for arm in [a for a in args.arms.split(",") if a]:
        if arm not in ARMS:
            ap.error(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")
        done = (runs / arm / "result.json").is_file()
        if args.report_only and not done:
            continue
        print(f"arm {arm}: {'cached' if done else 'running'}", flush=True)
        rows.append(run_arm(arm, scale, files, runs, args.seed))
    if not rows:
        print("no finished arms yet")
        return 1
    base = rows[0]["base"]
    base_help = rows[0].get("base_helpfulness")
    text = table(rows, base, base_help)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / f"{args.scale}.json", {
        "scale": args.scale, "settings": scale.__dict__, "seed": args.seed,
        "attack_items_equal_to_eval_prompt": overlap, "rows": rows})
    (args.out / f"{args.scale}.md").write_text(text + "\n", encoding="utf-8")
    chart(rows, base, args.out / f"{args.scale}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
