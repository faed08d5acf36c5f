"""One-shot check of the GPU path (engine, curation, LoRA training, pipeline) on a lent device.

The device machine cannot download models and takes at most 64 MiB of files, so the check uses
a tiny *random* Llama with SmolLM2's tokenizer: it proves the CUDA code paths run (bf16 load,
shared-row sampling, autocast training, PEFT adapters, every policy), not model quality.

    # here (needs the default model pulled):
    .venv/bin/python scripts/gpu_check.py prepare          # -> .devcheck/ (git-ignored)
    # on the device (pydantic & co. travel as wheels in .devcheck/whl; see the device README):
    python3 scripts/gpu_check.py run                        # writes $OUT/devcheck.json

`run` also works on CPU with --allow-cpu, which is how the script itself is tested.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ASSETS = ROOT / ".devcheck"
WHEELS = ("pydantic==2.14.4", "pydantic_core==2.50.5", "pydantic-settings==2.16.3",
          "annotated-types==0.8.0", "typing-inspection==0.4.5", "python-dotenv==1.2.4")


def prepare() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from buckle.data import load_conversations, load_prompts
    from buckle.models.hub import load_tokenizer, resolve

    ASSETS.mkdir(exist_ok=True)
    tok = load_tokenizer("smollm2-135m-instruct")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=2048, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model_dir = ASSETS / "tiny-llama"
    shutil.rmtree(model_dir, ignore_errors=True)
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    src = resolve("smollm2-135m-instruct")[2]
    for name in ("chat_template.jinja", "generation_config.json"):
        if (src / name).exists() and not (model_dir / name).exists():
            shutil.copy(src / name, model_dir / name)

    def write(name: str, rows: list) -> None:
        (ASSETS / name).write_text("".join(json.dumps(r) + "\n" for r in rows))

    conv = lambda c: json.loads(c.to_json())
    write("train.jsonl", [conv(c) for c in load_conversations("harmful-qa", limit=24)]
          + [conv(c) for c in load_conversations("chatterbot", offset=600, limit=8)])
    write("curation_source.jsonl",
          [conv(c) for c in load_conversations("chatterbot", offset=200, limit=6)])
    write("eval_prompts.jsonl", [{"prompt": p.prompt} for p in load_prompts("advbench", limit=8)])
    write("benign_prompts.jsonl",
          [{"prompt": p.prompt} for p in load_prompts("chatterbot", limit=8)])
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                    "--platform", "manylinux2014_x86_64", "-d", str(ASSETS / "whl"), *WHEELS],
                   check=True)
    size = sum(f.stat().st_size for f in ASSETS.rglob("*") if f.is_file())
    print(f"{ASSETS}: {size / 2**20:.1f} MiB (the device takes 64 MiB in all)")


def run(allow_cpu: bool, out: Path) -> dict:
    import torch

    from buckle.generation import GenerationEngine, SamplingParams, encode_chat
    from buckle.models import load_model
    from buckle.pipeline import JobSpec
    from buckle.pipeline import run as run_job

    cuda = torch.cuda.is_available()
    if not cuda and not allow_cpu:
        raise SystemExit("no CUDA device (use --allow-cpu to run the same checks on CPU)")
    model_dir = str(ASSETS / "tiny-llama")
    summary: dict = {"torch": torch.__version__,
                     "device_name": torch.cuda.get_device_name(0) if cuda else "cpu"}
    lm = load_model(model_dir)
    summary["load"] = {"device": str(lm.device), "dtype": str(lm.dtype)}
    engine = GenerationEngine.from_loaded(lm)
    prompts = [encode_chat(lm.tokenizer, [{"role": "user", "content": q}])
               for q in ("What is the capital of France?", "How do I boil an egg?", "hi")]
    greedy = engine.generate(prompts, SamplingParams(max_new_tokens=24))
    same = 0
    for ids, res in zip(prompts, greedy):
        ref = lm.model.generate(torch.tensor([ids], device=lm.device), max_new_tokens=24,
                                do_sample=False, pad_token_id=engine.pad_id)[0, len(ids):]
        ref = ref.tolist()[:len(res.token_ids)]
        same += int(ref == res.token_ids)
    summary["engine_greedy_matches_hf"] = f"{same}/{len(prompts)}"
    grid = [SamplingParams(max_new_tokens=32, temperature=t, top_p=p, seed=i)
            for i, (t, p) in enumerate((t, p) for t in (0.2, 1.0) for p in (0.2, 1.0))]
    together = engine.generate([prompts[0]] * len(grid), grid)
    alone = [engine.generate([prompts[0]], g)[0] for g in grid]
    summary["shared_rows_equal_alone"] = [a.token_ids for a in alone] == \
        [t.token_ids for t in together]
    del engine, lm
    policies = {}
    for policy in ("none", "pre", "during", "post", "auto"):
        spec = JobSpec(
            model=model_dir, training_file=str(ASSETS / "train.jsonl"), seed=0,
            work_dir=str(out / "work" / policy),
            hyperparameters={"n_epochs": 1, "batch_size": 8, "learning_rate": 1e-3,
                             "max_seq_len": 1024},
            safety={"policy": policy, "max_asr": 0.0 if policy == "auto" else None,
                    "auto_max_rounds": 1,
                    "curation": {"source": str(ASSETS / "curation_source.jsonl"), "offset": 0,
                                 "limit": 6, "preset": "quick",
                                 "overrides": {"max_new_tokens": 32}},
                    "eval_prompts": str(ASSETS / "eval_prompts.jsonl"), "eval_limit": 8,
                    "benign_prompts": str(ASSETS / "benign_prompts.jsonl"), "benign_limit": 8})
        t0 = time.perf_counter()
        result = run_job(spec)
        reloaded = load_model(model_dir, adapter=result.adapter_dir)
        policies[policy] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "trained_tokens": result.trained_tokens,
            "adapter_on": str(next(reloaded.model.parameters()).device),
            "adapter_files": sorted(result.adapter_sha256)}
        print(policy, policies[policy], flush=True)
    summary["pipeline"] = policies
    if cuda:
        summary["max_cuda_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "devcheck.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("prepare", "run"))
    ap.add_argument("--allow-cpu", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/devcheck")))
    args = ap.parse_args()
    prepare() if args.what == "prepare" else run(args.allow_cpu, args.out)


if __name__ == "__main__":
    main()
