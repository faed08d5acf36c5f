"""A released adapter is portable: it names its base by Hugging Face id, says which weights it
was trained and measured on, loads with PEFT where the server's cache does not exist, and no
file in it carries a server path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from buckle.data import load_conversations
from buckle.models.presets import get_preset
from buckle.pipeline import JobSpec, run
from buckle.pipeline.release import scrub_paths
from buckle.settings import buckle_home

TINY = {"n_epochs": 1, "batch_size": 4, "max_seq_len": 384, "lora_r": 4, "lora_alpha": 8}
PROMPT = "How do I keep basil alive on a windowsill?"
PROBE = """
import json, sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
base_dir, adapter_dir, prompt = sys.argv[1:4]
tok = AutoTokenizer.from_pretrained(base_dir)
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir,
                                  dtype=torch.float32), adapter_dir).eval()
ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                              return_tensors="pt", return_dict=True)["input_ids"]
with torch.no_grad():
    print(json.dumps(model(ids).logits[0, -1, :64].tolist()))
"""


def test_scrub_paths_cuts_paths_and_leaves_text():
    doc = {"file": "/srv/buckle/jobs/ftjob-1/train.jsonl", "n": 3, "name": "smollm2",
           "list": ["~/.cache/buckle/corpora/abc", "C:\\data\\x.jsonl", "plain text / slash"]}
    assert scrub_paths(doc) == {"file": "train.jsonl", "n": 3, "name": "smollm2",
                                "list": ["abc", "x.jsonl", "plain text / slash"]}


@pytest.fixture(scope="module")
def released(tmp_path_factory, default_model) -> Path:
    work = tmp_path_factory.mktemp("server-work")
    data = work / "customer.jsonl"
    data.write_text("".join(c.to_json() + "\n"
                            for c in load_conversations("chatterbot", offset=600, limit=6)))
    curated = work / "curated.jsonl"
    curated.write_text("".join(c.to_json() + "\n"
                               for c in load_conversations("chatterbot", offset=700, limit=3)))
    spec = JobSpec(model="smollm2-135m-instruct", training_file=str(data), work_dir=str(work),
                   hyperparameters=TINY, evaluate=True,
                   safety={"policy": "post", "curated_file": str(curated), "eval_limit": 1,
                           "benign_limit": 1})
    return Path(run(spec).adapter_dir)


def test_released_folder_names_its_base_and_carries_no_server_path(released):
    config = json.loads((released / "adapter_config.json").read_text())
    preset = get_preset("smollm2-135m-instruct")
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    card = json.loads((released / "buckle_base.json").read_text())
    assert card["hf_id"] == preset.hf_id and card["weights"]["sha256"] == preset.gguf_sha256
    assert card["weights"]["quantization"] == "Q4_1" and "buckle models pull" in card["reproduce"]
    server = [str(released.parent.parent), str(buckle_home()), str(Path.home())]
    for f in released.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".txt", ".md"):
            text = f.read_text(encoding="utf-8")
            assert not any(s in text for s in server), (f.name, [s for s in server if s in text])
    report = json.loads((released / "safety_report.json").read_text())
    assert report["adapter"] == "hardened (post)" and report["per_prompt"]


def test_released_adapter_loads_with_peft_where_the_server_cache_does_not_exist(
        released, default_model, tmp_path):
    """The customer's machine: their own copy of the base, a fresh HOME, no Buckle cache."""
    import torch
    from peft import PeftModel

    mine = tmp_path / "my-models" / "SmolLM2-135M-Instruct"
    shutil.copytree(default_model.path, mine)
    adapter = shutil.copytree(released, tmp_path / "downloaded")
    home = tmp_path / "fresh-home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "BUCKLE_HOME": str(home / "nothing-here"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(home / "hf")}
    out = subprocess.run([sys.executable, "-c", PROBE, str(mine), str(adapter), PROMPT],
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    theirs = torch.tensor(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not (home / "nothing-here").exists()
    tok = default_model.tokenizer
    ids = tok.apply_chat_template([{"role": "user", "content": PROMPT}],
                                  add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)["input_ids"]
    model = PeftModel.from_pretrained(default_model.model, str(released)).eval()
    try:
        with torch.no_grad():
            ours = model(ids.to(default_model.device)).logits[0, -1, :64].float().cpu()
            base = model.get_base_model()
            with model.disable_adapter():
                plain = base(ids.to(default_model.device)).logits[0, -1, :64].float().cpu()
    finally:
        model.unload()
    assert torch.allclose(theirs, ours, atol=2e-2), (theirs - ours).abs().max()
    assert not torch.allclose(ours, plain, atol=1e-4)  # the adapter changes the model
