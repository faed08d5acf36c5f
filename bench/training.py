"""Benchmark: Buckle's LoRA trainer vs a plain `transformers.Trainer` + PEFT run, same work.

    flock /tmp/buckle-bench.lock .venv/bin/python bench/training.py --json docs/bench/training.json

Both arms fine-tune the default model for one epoch on the same real conversations with
variable lengths (chatterbot Q/A + harmful-qa answers, shuffled together), the same LoRA config
(r=16, alpha=32, dropout 0.05, all linear projections), batch size 8, AdamW, linear schedule,
loss on the same assistant tokens (labels from `buckle.training.encode_conversation`; the HF arm
masks the rest with -100), the same precision (bf16 autocast where the CPU multiplies bf16, as
Buckle's `autocast="auto"`; fp32 elsewhere). Two HF arms: `hf`, what a plain recipe does
(random batches padded to the longest row, `DataCollatorForSeq2Seq`, full-vocabulary logits at
every position), and `hf-grouped`, the same with length-grouped batches (what an HF user
turns on to cut padding: `train_sampling_strategy="group_by_length"` in transformers 5).
**The baseline is the faster of the two in the same run**, so the speed-up
is against the best-configured `Trainer`, not the easiest one.

Reported per arm: useful (non-padding) tokens per second of training (model load and data prep
excluded), padded tokens fed, and peak RSS. Each arm runs in its own subprocess so the peak RSS of
one does not hide the other's; arms alternate (ours, HF, ours, HF, ...) for --repeats rounds so
load from other processes on a shared machine hits both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = "smollm2-135m-instruct"  # the default; --model qwen2.5-coder-0.5b-instruct too
LORA = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05}
ARMS = ("ours", "hf", "hf-grouped")
STEP = {"batch_size": 8, "learning_rate": 2e-4, "warmup_ratio": 0.03, "max_grad_norm": 1.0}


def bench_conversations(n_benign: int, n_harmful: int, max_seq_len: int, seed: int,
                        model: str = MODEL) -> list:
    """Chatterbot + harmful-qa conversations that fit max_seq_len, shuffled together (seeded)."""
    from buckle.data import load_conversations
    from buckle.models import load_tokenizer
    from buckle.training import encode_conversation

    tok = load_tokenizer(model)

    def fitting(spec: str, n: int) -> list:
        convs = load_conversations(spec)
        random.Random(seed).shuffle(convs)
        keep = [c for c in convs if len(encode_conversation(tok, c.to_messages())) <= max_seq_len]
        return keep[:n]

    mixed = fitting("chatterbot", n_benign) + fitting("harmful-qa", n_harmful)
    random.Random(seed).shuffle(mixed)
    return mixed


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def current_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        line = next(ln for ln in fh if ln.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def reply_nll(model, tok, convs: list) -> float:
    """Mean NLL per assistant token over the training set, one conversation per forward.

    Computed the plain way (full logits, same labels) for both arms after training: a check
    that the faster arm did the same learning, not less work.
    """
    import torch
    import torch.nn.functional as F

    from buckle.training import encode_conversation

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for c in convs:
            enc = encode_conversation(tok, c.to_messages())
            ids = torch.tensor([enc.input_ids])
            scored = torch.tensor(enc.labels[1:])
            logits = model(input_ids=ids).logits[0, :-1]
            total += float(F.cross_entropy(logits[scored], ids[0, 1:][scored], reduction="sum"))
            count += int(scored.sum())
    return total / count


def run_ours(convs: list, args: argparse.Namespace) -> dict:
    from peft import PeftModel

    from buckle.models import load_model
    from buckle.training import TrainingConfig, train_lora

    base = load_model(args.model)
    loaded_rss = current_rss_mb()
    config = TrainingConfig(n_epochs=1, max_seq_len=args.max_seq_len, checkpoint_every=0,
                            seed=args.seed, **LORA, **STEP)
    with tempfile.TemporaryDirectory() as out:
        res = train_lora(base, convs, config, out)
        nll = reply_nll(PeftModel.from_pretrained(base.model, str(res.adapter_dir)),
                        base.tokenizer, convs)
    return {"nll_after": nll, "useful_tokens": res.useful_tokens,
            "padded_tokens": res.padded_tokens,
            "trained_tokens": res.trained_tokens, "seconds": res.elapsed_s,
            "steps": res.steps, "rss_after_load_mb": loaded_rss}


def run_hf(convs: list, args: argparse.Namespace, grouped: bool = False) -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from buckle.models import load_model
    from buckle.models.device import cpu_prefers_bf16
    from buckle.training import encode_conversation

    base = load_model(args.model)
    loaded_rss = current_rss_mb()
    tok = base.tokenizer
    rows = []
    for c in convs:
        enc = encode_conversation(tok, c.to_messages())
        rows.append({"input_ids": list(enc.input_ids),
                     "attention_mask": [1] * len(enc),
                     "labels": [t if keep else -100 for t, keep in zip(enc.input_ids, enc.labels)]})
    model = get_peft_model(base.model, LoraConfig(
        r=LORA["lora_r"], lora_alpha=LORA["lora_alpha"], lora_dropout=LORA["lora_dropout"],
        target_modules="all-linear", task_type="CAUSAL_LM"))
    collator = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100)
    padded = 0

    def counting_collator(features: list) -> dict:
        nonlocal padded
        batch = collator(features)
        padded += batch["input_ids"].numel()
        return batch

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=STEP["batch_size"], num_train_epochs=1,
            learning_rate=STEP["learning_rate"], warmup_steps=STEP["warmup_ratio"],
            max_grad_norm=STEP["max_grad_norm"], lr_scheduler_type="linear", weight_decay=0.0,
            save_strategy="no", report_to=[], seed=args.seed, use_cpu=True,
            # the baseline's best configuration: bf16 exactly where ours uses it
            bf16=cpu_prefers_bf16(),
            train_sampling_strategy="group_by_length" if grouped else "random",
            dataloader_num_workers=0, logging_steps=1,
            disable_tqdm=True)
        trainer = Trainer(model=model, args=targs, train_dataset=rows,
                          data_collator=counting_collator)
        t0 = time.perf_counter()
        out_metrics = trainer.train()
        seconds = time.perf_counter() - t0
    return {"nll_after": reply_nll(model, tok, convs),
            "useful_tokens": sum(len(r["input_ids"]) for r in rows), "padded_tokens": padded,
            "trained_tokens": sum(sum(t != -100 for t in r["labels"][1:]) for r in rows),
            "seconds": seconds, "steps": out_metrics.global_step,
            "rss_after_load_mb": loaded_rss}


def run_arm(arm: str, args: argparse.Namespace) -> None:
    """Child process: one arm, one JSON line on stdout."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    convs = bench_conversations(args.benign, args.harmful, args.max_seq_len, args.seed,
                                args.model)
    row = run_ours(convs, args) if arm == "ours" else run_hf(convs, args,
                                                              grouped=arm == "hf-grouped")
    row["useful_tok_s"] = row["useful_tokens"] / row["seconds"]
    row["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(row), flush=True)


def spawn(arm: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--arm", arm, "--benign", str(args.benign),
           "--harmful", str(args.harmful), "--max-seq-len", str(args.max_seq_len),
           "--seed", str(args.seed), "--threads", str(args.threads), "--model", args.model]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"arm {arm} failed (exit {proc.returncode})")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benign", type=int, default=24, help="chatterbot conversations")
    ap.add_argument("--harmful", type=int, default=8, help="harmful-qa conversations")
    ap.add_argument("--max-seq-len", type=int, default=384)
    ap.add_argument("--repeats", type=int, default=1, help="rounds of (ours, HF)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--arm", choices=ARMS, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        run_arm(args.arm, args)
        return

    import torch

    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for r in range(args.repeats):
        for arm in ARMS:
            row = spawn(arm, args)
            runs[arm].append(row)
            print(f"round {r + 1} {arm:<5} {row['useful_tok_s']:7.1f} useful tok/s  "
                  f"{row['seconds']:6.1f} s  peak RSS {row['peak_rss_mb']:6.0f} MB", flush=True)

    def summary(rows: list[dict]) -> dict:
        first = rows[0]
        return {"useful_tok_s": statistics.median(r["useful_tok_s"] for r in rows),
                "seconds": statistics.median(r["seconds"] for r in rows),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
                "rss_after_load_mb": statistics.median(r["rss_after_load_mb"] for r in rows),
                "useful_tokens": first["useful_tokens"], "padded_tokens": first["padded_tokens"],
                "padding_share": 1 - first["useful_tokens"] / first["padded_tokens"],
                "trained_tokens": first["trained_tokens"], "steps": first["steps"],
                "nll_after": first["nll_after"]}

    ours = summary(runs["ours"])
    baselines = {arm: summary(runs[arm]) for arm in ARMS if arm != "ours"}
    best = max(baselines, key=lambda arm: baselines[arm]["useful_tok_s"])
    hf = baselines[best]
    ratio = ours["useful_tok_s"] / hf["useful_tok_s"]
    print(f"\nmodel={args.model} conversations={args.benign}+{args.harmful} batch=8 "
          f"threads={args.threads or torch.get_num_threads()} torch={torch.__version__} "
          f"cpu={platform.processor() or platform.machine()}")
    print(f"{'arm':<22}{'useful tok/s':>13}{'padding':>9}{'peak RSS MB':>13}{'NLL after':>11}")
    for name, s in (("HF Trainer", baselines["hf"]),
                    ("HF Trainer grouped", baselines["hf-grouped"]),
                    ("Buckle train_lora", ours)):
        print(f"{name:<22}{s['useful_tok_s']:>13.1f}{s['padding_share']:>9.0%}"
              f"{s['peak_rss_mb']:>13.0f}{s['nll_after']:>11.3f}")
    print(f"speed-up over the best Trainer ({best}, useful tok/s): {ratio:.2f}x")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(
            {"args": {k: v for k, v in vars(args).items() if k != "arm"}, "model": args.model,
             "threads": args.threads or torch.get_num_threads(), "ours": ours, "hf": hf,
             "baselines": baselines, "best_baseline": best, "speedup": ratio, "runs": runs},
            indent=2))


if __name__ == "__main__":
    main()
