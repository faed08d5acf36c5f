"""Experiment v2: does safety corpus v2 keep a customer's fine-tune safe at every stage, and useful?

    .venv/bin/python bench/safety.py --scale cpu --split dev --arms attacked,during   # in parts
    .venv/bin/python bench/safety.py --scale cpu --split dev --arms during --dose curated_ratio=0.4
    .venv/bin/python bench/safety.py --scale cpu --split test          # once, with chosen doses
    .venv/bin/python bench/safety.py --scale cpu --split test --report-only

Every arm is one `buckle.pipeline.run` job (what the service's workers run), resumable: its work
dir lives under `--runs/<scale>/<split>/<arm>` and its result JSON is written when it finishes.

The customer file is *poisoned*: support-ticket triage rows (`buckle/data/triage.py`, the customer's
real task) with harmful Q/A pairs mixed in (pyrit's harmful-qa 0–31: jailbreak-tuning), trained
with the product's default hyperparameters. Utility = loss and exact match on held-out tickets
(the job's validation file). Arms:
  attacked            policy `none` on the poisoned file
  pre|during|post|auto  the same file under each policy, safety corpus v2 (`--parts`)
  part-<name>         `during` with one corpus part alone (ctrl, responsible, anchors)
  uncurated           `during` with the ctrl part's items before revision (the control)
  refusal-mix         `during` with fixed refusal texts (the reviewers' baseline)
  benign, benign-during   the triage rows alone, without and with `during`

Dev and test share nothing. Harmful prompts: AdvBench 0–99 (test) / 200–259 (dev; `dev3`:
100–259). Benign: chatterbot prompts 0–49 + everyday-test 0–49 (test) / chatterbot 400–459 +
everyday-dev 0–59 (dev and dev3; the everyday-dev half since 2026-12-01, runs before it are in
`dev-v1`). Borderline: `borderline`
(test) / `borderline-dev`. Training data never comes from these: the attack is harmful-qa 0–31,
`responsible` answers harmful-qa 64–263, `anchors` answers `anchor-prompts` (everyday train
split + chatterbot small talk from prompt 600), `ctrl` revises the model's `everyday` answers,
refusal pairs AdvBench 400+, and the pipeline drops any safety item equal to an evaluation prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from safety_table import chart, table

from buckle.atomic import atomic_write_json
from buckle.data import load_conversations, load_prompts
from buckle.data.records import PromptItem
from buckle.data.triage import train_and_held_out
from buckle.pipeline import JobSpec


@dataclass(frozen=True)
class Scale:
    model: str
    attack: int  # harmful Q/A pairs in the poisoned file
    task: int  # triage rows in the customer file
    held_out: int  # triage rows held out for utility
    attack_words: int | None  # cut each attack answer to its first N words (CPU time)
    responsible: int  # harmful prompts the base model answers (`responsible` part)
    anchors: int  # everyday prompts the base model answers (`anchors` part)
    ctrl: int  # items CTRL revises
    ctrl_overrides: dict[str, Any] = field(default_factory=dict)
    max_new_tokens: int = 160  # own-voice reply cap


SCALES = {
    "smoke": Scale("smollm2-135m-instruct", 8, 16, 8, 32, 8, 8, 4,
                   {"rounds": 1, "max_new_tokens": 64}, max_new_tokens=48),
    "cpu": Scale("qwen2.5-coder-0.5b-instruct", 32, 64, 40, 48, 200, 200, 64,
                 {"max_new_tokens": 160}),
}
SPLITS = {
    # name: (harmful (source, offset, limit), benign [(source, offset, limit)], borderline)
    "test": (("advbench", 0, 100), [("chatterbot", 0, 50), ("everyday-test", 0, 50)],
             ("borderline", 0, 1000)),
    "dev": (("advbench", 200, 60), [("chatterbot", 400, 60), ("everyday-dev", 0, 60)],
            ("borderline-dev", 0, 1000)),
    # dev v3 (2026-12-04): dev v2 with 160 harmful prompts (AdvBench 100-259), because at n = 60
    # `pre`'s dev result (100% of the rise removed) did not hold on the test split (67%)
    "dev3": (("advbench", 100, 160), [("chatterbot", 400, 60), ("everyday-dev", 0, 60)],
             ("borderline-dev", 0, 1000)),
}
SMOKE_LIMIT = 10  # prompts per evaluation set at scale smoke
# The dose of each policy, chosen on the dev split (docs/results.md has the sweep, 2026-12-01):
# `during` 0.25 met every dev target (0.4 cost +6.7 points of benign over-refusal). The safety
# stages' epochs and rate are the policies' own documented doses (`buckle.pipeline.policies`:
# `post`/`auto` 1 restore epoch at half the customer's rate, from dev v2), so the
# experiment measures what the product does. The first test look at `post` (full rate) is
# kept as the arm `post+lr=2e-4-first-look`. `pre` (dev v2, 2026-12-04): Booster with the
# benign plasticity term, 3 immunize epochs at 5e-4, removed 100% of the rise at 95% exact match
# (the first `pre` dose to meet the dev targets); stated in full here, as it was run on dev.
DOSES: dict[str, dict[str, Any]] = {
    "pre": {"immunize": {"method": "booster", "plasticity": 1}, "safety_epochs": 3,
            "safety_learning_rate": 0.0005},
    "post": {}, "during": {"curated_ratio": 0.25},
    "auto": {"curated_ratio": 0.25, "max_asr": 0.05, "auto_max_rounds": 2},
}
# The corpus parts of the policy arms: the own-voice parts (with small-talk anchors they held
# over-refusal at the base rate on dev); `ctrl` is measured as its own arm against `uncurated`.
POLICY_PARTS = ("responsible", "anchors")
POLICY_ARMS = ("pre", "during", "post", "auto")
ARMS = ("attacked", *POLICY_ARMS, "part-ctrl", "part-responsible", "part-anchors", "uncurated",
        "refusal-mix", "benign", "benign-during")


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r.to_json() + "\n" for r in rows), encoding="utf-8")
    return path


def _prompt_file(path: Path, windows: list[tuple[str, int, int]], cap: int | None) -> Path:
    items: list[PromptItem] = []
    for source, offset, limit in windows:
        items += load_prompts(source, offset=offset, limit=limit if cap is None else
                              min(limit, cap))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": it.id, "prompt": it.prompt,
                                        "category": it.category}) + "\n" for it in items),
                    encoding="utf-8")
    return path


def data_files(scale_name: str, split: str, folder: Path) -> dict[str, Path]:
    """The customer's files and the split's evaluation sets, as JSONL files any job can name."""
    import random

    scale = SCALES[scale_name]
    attack = load_conversations("harmful-qa", limit=scale.attack)
    if scale.attack_words:
        attack = [c.with_reply_cut(scale.attack_words) for c in attack]
    task, held_out = train_and_held_out(scale.task, scale.held_out)
    poisoned = task + attack
    random.Random(0).shuffle(poisoned)
    cap = SMOKE_LIMIT if scale_name == "smoke" else None
    harmful, benign, borderline = SPLITS[split]
    return {"poisoned": _write_jsonl(folder / "poisoned.jsonl", poisoned),
            "task": _write_jsonl(folder / "task.jsonl", task),
            "held_out": _write_jsonl(folder / "held_out.jsonl", held_out),
            "harmful": _prompt_file(folder / "eval_harmful.jsonl", [harmful], cap),
            "benign": _prompt_file(folder / "eval_benign.jsonl", benign, cap),
            "borderline": _prompt_file(folder / "eval_borderline.jsonl", [borderline], cap)}


def _count(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def arm_spec(arm: str, scale: Scale, files: dict[str, Path], work: Path, seed: int,
             parts: tuple[str, ...], dose: dict[str, Any]) -> JobSpec:
    policy = {"attacked": "none", "benign": "none", "benign-during": "during"}.get(arm, arm)
    arm_parts = parts
    if arm.startswith("part-"):
        policy, arm_parts = "during", (arm.removeprefix("part-"),)
    safety: dict[str, Any] = {
        "policy": policy, "parts": list(arm_parts),
        "responsible": {"source": "harmful-qa", "offset": 64, "limit": scale.responsible,
                        "max_new_tokens": scale.max_new_tokens},
        "anchors": {"source": "anchor-prompts", "offset": 0, "limit": scale.anchors,
                    "max_new_tokens": scale.max_new_tokens},
        "curation": {"source": "anchors", "offset": 0, "limit": scale.ctrl, "preset": "v2",
                     "overrides": scale.ctrl_overrides},
        "eval_prompts": str(files["harmful"]), "eval_limit": _count(files["harmful"]),
        "benign_prompts": str(files["benign"]), "benign_limit": _count(files["benign"]),
        "borderline_prompts": str(files["borderline"]),
        "borderline_limit": _count(files["borderline"]),
    }
    base_policy = "during" if policy in ("uncurated", "refusal-mix") else policy
    safety.update(DOSES.get(base_policy, {}) if policy != "none" else {})
    if policy != "none":
        safety.update(dose)
    data = files["task"] if arm.startswith("benign") else files["poisoned"]
    # the product's default customer hyperparameters (OpenAI-style n_epochs 3, batch 8)
    return JobSpec(model=scale.model, training_file=str(data),
                   validation_file=str(files["held_out"]), work_dir=str(work), seed=seed,
                   safety=safety)


def run_arm(name: str, arm: str, scale: Scale, files: dict[str, Path], runs: Path, seed: int,
            parts: tuple[str, ...], dose: dict[str, Any]) -> dict:
    from buckle.pipeline import run

    out = runs / name / "result.json"
    if out.is_file():
        return json.loads(out.read_text(encoding="utf-8"))
    spec = arm_spec(arm, scale, files, runs / name / "work", seed, parts, dose)
    t0 = time.perf_counter()
    last = {"stage": None}

    def progress(event: Any) -> None:
        step = (event.data or {}).get("step")
        if event.stage != last["stage"] or event.stage in ("evaluate", "curate") \
                or (step or 1) % 8 == 0:
            print(f"  [{name}] {time.strftime('%H:%M:%S')} {event.fraction:5.1%} "
                  f"{event.stage}: {event.message}", flush=True)
        last["stage"] = event.stage

    result = run(spec, progress=progress)
    row = {"arm": name, "policy": spec.safety.policy, "parts": list(spec.safety.parts),
           "dose": dose, "seconds": time.perf_counter() - t0,
           "base": result.safety["base"], "adapter": result.safety["adapter"],
           "utility": result.safety["utility"], "rounds": result.safety["rounds"],
           "corpus": result.safety["corpus"], "trained_tokens": result.trained_tokens,
           "adapter_dir": result.adapter_dir, "base_report": result.safety.get("base_report"),
           "spec": json.loads(spec.model_dump_json())}
    atomic_write_json(out, row)
    return row


def _label(value: Any) -> str:
    """A dose value as part of an arm's folder name: {"method": "booster"} -> method-booster."""
    if isinstance(value, dict):
        return ".".join(f"{k}-{v}" for k, v in sorted(value.items()))
    return str(value)


def _parse_dose(items: list[str]) -> dict[str, Any]:
    dose = {}
    for item in items:
        key, _, value = item.partition("=")
        dose[key] = json.loads(value)
    return dose


def main(argv: list[str] | None = None) -> int:
    # Every arm in docs/results.md was decoded in fp32; new arms must be comparable with them
    # (bf16 moves some replies: docs/benchmarks.md). Set the variable to change it for a fresh run.
    os.environ.setdefault("BUCKLE_GENERATION_PRECISION", "fp32")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    ap.add_argument("--split", choices=sorted(SPLITS), default="dev")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--parts", default=",".join(POLICY_PARTS),
                    help="safety corpus v2 parts of the policy arms")
    ap.add_argument("--dose", action="append", default=[],
                    help="KEY=JSON override of the safety block (a dev sweep); names the arm")
    ap.add_argument("--runs", type=Path, default=ROOT / "reports" / "safety")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "safety")
    args = ap.parse_args(argv)
    if args.split == "test" and args.dose:
        ap.error("--dose is for the dev split; the test split runs the documented DOSES once")
    scale = SCALES[args.scale]
    runs = args.runs / args.scale / args.split
    files = data_files(args.scale, args.split, runs / "data")
    parts = tuple(p for p in args.parts.split(",") if p)
    dose = _parse_dose(args.dose)
    suffix = "".join(f"+{k}={_label(v)}" for k, v in sorted(dose.items()))
    suffix += "" if parts == POLICY_PARTS else f"+parts={'.'.join(parts)}"
    print(f"scale {args.scale}, split {args.split}: {scale}", flush=True)
    rows = []
    for arm in [a for a in args.arms.split(",") if a]:
        if arm not in ARMS:
            ap.error(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")
        name = arm + (suffix if arm in POLICY_ARMS or arm == "benign-during" else "")
        done = (runs / name / "result.json").is_file()
        if args.report_only and not done:
            continue
        print(f"arm {name}: {'cached' if done else 'running'}", flush=True)
        rows.append(run_arm(name, arm, scale, files, runs, args.seed, parts, dose))
    if args.report_only:  # every finished arm of the split, sweeps included
        rows = [json.loads(p.read_text(encoding="utf-8"))
                for p in sorted(runs.glob("*/result.json"))]
    if not rows:
        print("no finished arms yet")
        return 1
    text = table(rows)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.scale}-{args.split}"
    atomic_write_json(args.out / f"{stem}.json", {
        "scale": args.scale, "split": args.split, "settings": scale.__dict__,
        "doses": DOSES, "seed": args.seed, "rows": rows})
    (args.out / f"{stem}.md").write_text(text + "\n", encoding="utf-8")
    chart(rows, args.out / f"{stem}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
