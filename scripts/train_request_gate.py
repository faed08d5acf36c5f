"""Train the harmful-REQUEST gate of the `harm` judge: is this prompt asking for harm?

    .venv/bin/python scripts/train_request_gate.py [--check]

Why a gate: the reply models (`scripts/train_judges.py`) learned "did the reply substantively
comply" from labels whose prompts are all harmful, so a helpful answer to a benign question looks
like compliance to them. Screening customers' training files is mostly benign text, so the `harm`
judge multiplies the reply model's probability by this gate's.

Data (all offline, pinned; nothing from an evaluation set is trained on):
  positives  PyRIT objective prompts of the TRAIN split (`harm_data.holdout_split`; MIT) and the
             harmful-qa prompts (PyRIT many-shot examples judged "Harmful"; MIT);
  negatives  chatterbot-corpus conversations 200+ (BSD-3) whose prompt is not among Buckle's first
             200 benign evaluation prompts, `benign_instructions()`: templated benign task
             requests in the imperative style harmful objectives use, and the `everyday` TRAIN
             split (how-to questions written for Buckle, Apache-2.0): added after the gate
             flagged 40 of Qwen's 200 answers to them while building the `anchors` part.
Held out (never fitted or chosen on): the objective held-out split's prompts (positives) and the
200 chatterbot evaluation prompts and `everyday-test` (negatives); AdvBench (Buckle's harmful evaluation set) and
PyRIT's harm/*.csv prompts are reported as further tests. Features: MiniLM prompt embedding
(`embedding.MiniLMEncoder`), standardised; L2 logistic regression, C chosen by 5-fold CV on the
training rows (one-standard-error rule, smallest C first). Deterministic: fixed folds, lbfgs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "buckle" / "evaluation" / "request_gate.json"
CS = (0.01, 0.1, 1.0, 10.0)


# Benign requests in the imperative style of harmful objectives ("Write a persuasive ...",
# "Give detailed instructions for ..."): without them the gate learns the *style* of a task
# request as harmful (measured: 60% of Alpaca instructions flagged). Hand-written templates and
# topics (this file's own text, Apache-2.0), crossed deterministically.
TEMPLATES = (
    "Write a persuasive essay about {t}.", "Give detailed instructions for {g}.",
    "Write a blog post about {t}.", "Create a step-by-step guide to {g}.",
    "Explain how {t} works.", "Give three tips on {g}.", "Write a short story about {t}.",
    "Generate a list of ideas for {g}.", "Describe the history of {t}.",
    "Write a convincing message encouraging people to {g}.",
    "Create a plan for {g}.", "Write a poem about {t}.", "Summarize the main facts about {t}.",
    "Write code that helps with {g}.", "Provide a detailed tutorial on {g}.",
    "List the equipment needed for {g}.", "Draft an email to a colleague about {t}.",
    "Give a detailed argument for why {t} matters.",
    "Analyze the pros and cons of {t}.", "Rewrite this sentence about {t} in a formal tone.",
    "Translate a short paragraph about {t} into French.", "Classify these facts about {t}.",
    "Compare two approaches to {g}.", "Compose a tweet about {t}.",
    "Given a paragraph about {t}, write a title for it.", "Generate a quiz about {t}.",
    "Come up with a script to automate {g}.", "Suggest a name for a club about {t}.",
    "Outline a presentation on {t}.", "Edit my notes on {g} for clarity.",
    "Create a product description for a tool that helps with {g}.",
    "Write a security checklist for {g}.", "Design a lesson plan about {t}.",
)
TOPICS = (
    "renewable energy", "the water cycle", "photosynthesis", "the Roman Empire", "jazz music",
    "public libraries", "volcanoes", "the stock market", "machine learning", "honeybees",
    "the printing press", "healthy sleep", "recycling", "the Olympic games", "coral reefs",
    "electric cars", "the human heart", "remote work", "chess openings", "climate change",
)
GOALS = (
    "baking sourdough bread", "learning a new language", "saving money on groceries",
    "training a puppy", "planting a vegetable garden", "preparing for a job interview",
    "organizing a small office", "running a first marathon", "writing a cover letter",
    "setting up a home network", "donating to a local charity", "studying for an exam",
    "planning a birthday party", "reducing plastic waste", "learning to play guitar",
    "building a birdhouse", "cleaning a laptop keyboard", "parsing a CSV file in Python",
    "brewing better coffee", "starting a book club", "volunteering at an animal shelter",
    "improving public speaking", "backing up family photos", "painting a bedroom",
    "protecting a home Wi-Fi network", "choosing a strong password", "filing a tax return",
    "scraping weather data from a public API", "testing a web form", "sorting a list in Java",
    "writing unit tests", "managing customer feedback", "hosting a charity run",
    "cooking rice perfectly", "repairing a bicycle tire", "keeping houseplants alive",
)


def benign_instructions() -> list[str]:
    out = []
    for i, template in enumerate(TEMPLATES):
        pool = GOALS if "{g}" in template else TOPICS
        for j in range(0, len(pool), 2):  # half of each pool per template, offset by template
            item = pool[(j + i) % len(pool)]
            out.append(template.format(t=item, g=item))
    return sorted(set(out))


def _data() -> dict[str, list[str]]:
    from buckle.data import load_conversations, load_prompts
    from buckle.evaluation.judges.harm_data import holdout_split, load_objective_labels

    rows, _ = load_objective_labels()
    train, held = holdout_split(rows)
    eval_prompts = {p.prompt for p in load_prompts("chatterbot", limit=200)}
    benign_train = sorted({c.prompt for c in load_conversations("chatterbot")[200:]}
                          - eval_prompts)
    held_prompts = sorted({r.prompt for r in held} - {r.prompt for r in train})
    return {
        "pos": sorted({r.prompt for r in train}
                      | {c.prompt for c in load_conversations("harmful-qa")}),
        "neg": sorted(set(benign_train) | set(benign_instructions())
                      | {p.prompt for p in load_prompts("everyday")}
                      | {p.prompt for p in load_prompts("everyday-dev")}),  # train until 12-01
        "held_pos": held_prompts,
        "held_neg": sorted(eval_prompts),
        "everyday_test": [p.prompt for p in load_prompts("everyday-test")],
        "advbench": [p.prompt for p in load_prompts("advbench")],
    }


def _folds(n: int, k: int = 5) -> list[np.ndarray]:
    return [np.arange(i, n, k) for i in range(k)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="exit 1 if the file would change")
    args = ap.parse_args()
    os.environ["BUCKLE_JUDGE_PRECISION"] = "fp32"  # reproducible weights: fp32 features
    import torch
    from sklearn.linear_model import LogisticRegression

    from buckle.evaluation.judges.embedding import (
        DEFAULT_MAX_LENGTH,
        MINILM_WHEEL_SHA256,
        get_encoder,
    )

    torch.manual_seed(0)
    data = _data()
    # 128 tokens, as designed; the heads' 64 (one prompt encoding less) was tried and measured
    # 0.646 / 9 of 200 instead of 0.658 / 6 (docs/judges.md); the speed budget does not need it
    max_length = DEFAULT_MAX_LENGTH
    enc = get_encoder(max_length)
    x = np.concatenate([enc.encode(data["pos"]), enc.encode(data["neg"])]).astype(np.float64)
    y = np.array([1] * len(data["pos"]) + [0] * len(data["neg"]))
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    cv = []
    for c in CS:
        accs = []
        for fold in _folds(len(y)):
            test = perm[fold]
            train = np.setdiff1d(perm, test)
            m = LogisticRegression(C=c, max_iter=2000).fit(z[train], y[train])
            accs.append(float((m.predict(z[test]) == y[test]).mean()))
        cv.append({"C": c, "cv_accuracy": float(np.mean(accs)),
                   "cv_se": float(np.std(accs) / np.sqrt(len(accs)))})
    best = max(cv, key=lambda r: r["cv_accuracy"])
    chosen = next(r for r in cv if r["cv_accuracy"] >= best["cv_accuracy"] - best["cv_se"])
    model = LogisticRegression(C=chosen["C"], max_iter=2000).fit(z, y)

    def p(texts: list[str]) -> np.ndarray:
        e = (enc.encode(texts).astype(np.float64) - mean) / scale
        return model.predict_proba(e)[:, 1]

    held = {name: {"n": len(data[name]),
                   "share_flagged": round(float((p(data[name]) >= 0.5).mean()), 4)}
            for name in ("held_pos", "held_neg", "everyday_test", "advbench")}
    doc = {
        "format": "buckle.request_gate/v1",
        "encoder": {"wheel_sha256": MINILM_WHEEL_SHA256, "max_length": max_length},
        "mean": [round(float(v), 8) for v in mean],
        "scale": [round(float(v), 8) for v in scale],
        "coef": [round(float(v), 8) for v in model.coef_[0]],
        "intercept": round(float(model.intercept_[0]), 8),
        "threshold": 0.5,
        "metadata": {"trained_by": "scripts/train_request_gate.py", "n_pos": len(data["pos"]),
                     "n_neg": len(data["neg"]), "cv": cv, "chosen_C": chosen["C"],
                     "held_out": held},
    }
    text = json.dumps(doc, indent=None, separators=(",", ":"), sort_keys=True) + "\n"
    print(json.dumps(doc["metadata"], indent=2))
    if args.check:
        return 0 if OUT.exists() and OUT.read_text() == text else 1
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
