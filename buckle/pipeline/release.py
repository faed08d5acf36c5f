"""What a released adapter folder says about itself: which base it belongs to, and nothing else
about the server that trained it.

A customer loads the folder elsewhere (PEFT, vLLM, another machine), so `adapter_config.json`
names the base by its canonical Hugging Face id, not by the server's cache directory, and
`buckle_base.json` says exactly which weights the adapter was trained and measured on: for a
preset, the GGUF file, its sha256 and quantization (the adapter fits the *dequantized* GGUF, which
is close to but not the upstream bf16 checkpoint), and how to get the same weights again.
Every JSON file the folder carries goes through `scrub_paths` before it is written: a server path
(training file, work dir, corpus store, adapter dir) becomes its last component.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from buckle.evaluation.report import SafetyReport
from buckle.models.presets import PRESETS

BASE_FILE = "buckle_base.json"
ADAPTER_CONFIG = "adapter_config.json"


def _looks_like_path(text: str) -> bool:
    return (text.startswith(("/", "~", "./", "../", "\\\\"))
            or (len(text) > 2 and text[1] == ":" and text[2] in "\\/"))


def scrub_paths(value: Any) -> Any:
    """`value` with every string that is a filesystem path replaced by its last component."""
    if isinstance(value, dict):
        return {k: scrub_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_paths(v) for v in value]
    if isinstance(value, str) and _looks_like_path(value.strip()):
        text = value.strip()
        pure = PureWindowsPath(text) if "\\" in text else PurePosixPath(text)
        return pure.name or text.strip("/\\~") or "."
    return value


def base_model_card(name: str, fingerprint: str) -> dict[str, Any]:
    """What identifies the base weights, portably (no local paths)."""
    preset = PRESETS.get(name)
    if preset is None:  # a Hugging Face id or a user's directory
        hf_id = None if _looks_like_path(name) else name
        return {"name": scrub_paths(name), "hf_id": hf_id, "fingerprint": fingerprint,
                "weights": {"format": "transformers checkpoint"}}
    return {
        "name": preset.name, "hf_id": preset.hf_id, "fingerprint": fingerprint,
        "license": preset.license,
        "weights": {"format": "gguf", "file": preset.gguf_name, "sha256": preset.gguf_sha256,
                    "size": preset.gguf_size, "quantization": preset.quantization,
                    "dequantized_to": "float32 safetensors"},
        "reproduce": (f"`buckle models pull {preset.name}` fetches this GGUF (sha256 checked) and "
                      "converts it; or load the same file with transformers: "
                      f"AutoModelForCausalLM.from_pretrained(<dir with {preset.gguf_name}>, "
                      f"gguf_file='{preset.gguf_name}'). The upstream {preset.hf_id} weights are "
                      "the unquantized model: the adapter loads on them, but its safety report "
                      "was measured on the GGUF weights."),
    }


def make_portable(folder: Path, card: dict[str, Any]) -> None:
    """Point `adapter_config.json` at the canonical base id and write `buckle_base.json`."""
    config_path = folder / ADAPTER_CONFIG
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = card["hf_id"] or card["name"]
    config["revision"] = None
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (folder / BASE_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


_REPORT_TEXT = ("per_prompt", "per_benign_prompt", "per_borderline_prompt")


def public_report(report: SafetyReport, label: str) -> SafetyReport:
    """The report as a customer reads it: `adapter` is a readable label, and prompt-set names and
    settings carry no server path (prompts and replies are left as they are)."""
    doc = report.to_json_dict()
    kept = {k: doc.pop(k) for k in _REPORT_TEXT}
    doc = scrub_paths(doc)
    doc.update(kept, adapter=label if doc.get("adapter") else None)
    return SafetyReport.model_validate(doc)
