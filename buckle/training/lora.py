"""LoRA on a loaded base model for the length of a training run, and adapter files in PEFT format.

Why attach-then-unload instead of a deep copy: the caller keeps using the loaded base (for
evaluation right after training), and copying it doubles the memory of the largest object in the
process. PEFT injects LoRA layers into the base's modules in place; `unload()` puts the original
`nn.Linear`s back without merging anything, and `attached_lora` also restores each parameter's
`requires_grad` and the train/eval mode, so the base is exactly as it was (tested).

Adapters are written as PEFT writes them (`adapter_config.json` + `adapter_model.safetensors`),
so `peft.PeftModel.from_pretrained(base, dir)` and `buckle.models.load_model(adapter=dir)` load
them as-is; weights loaded back are checked key by key and shape by shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from buckle.training.config import TrainingConfig
from buckle.training.dropout import use_fast_dropout
from buckle.training.errors import AdapterMismatchError
from buckle.training.fused_lora import use_fused_lora

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def lora_config(config: TrainingConfig) -> Any:
    from peft import LoraConfig

    targets = config.lora_target_modules
    return LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
        bias="none", task_type="CAUSAL_LM")


@contextmanager
def attached_lora(base: Any, config: TrainingConfig) -> Iterator[Any]:
    """Yield a trainable PeftModel over `base`; on exit `base` is restored as it was.

    The LoRA A matrices are drawn from torch's global RNG, so seed it before entering.
    """
    from peft import PeftModel, get_peft_model

    if isinstance(base, PeftModel) or hasattr(base, "peft_config"):
        raise ValueError("the base model already carries an adapter; load the plain base model "
                         "and pass the adapter directory as init_adapter to continue from it")
    flags = {name: p.requires_grad for name, p in base.named_parameters()}
    was_training = base.training
    model = get_peft_model(base, lora_config(config))
    use_fast_dropout(model)  # PEFT's CPU dropout masks were 19% of a step (buckle.training.dropout)
    use_fused_lora(model)  # one autograd node per projection (buckle.training.fused_lora)
    try:
        yield model
    finally:
        model.unload()  # original modules back, LoRA dropped (nothing merged)
        if hasattr(base, "peft_config"):
            del base.peft_config
        for name, p in base.named_parameters():
            p.requires_grad_(flags.get(name, p.requires_grad))
        base.train(was_training)


def adapter_state(model: Any) -> dict[str, torch.Tensor]:
    """LoRA weights under PEFT's file keys (no adapter name), detached copies on CPU."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().to("cpu", copy=True).contiguous()
            for k, v in get_peft_model_state_dict(model).items()}


def write_adapter(model: Any, directory: Path) -> None:
    """Write the PEFT adapter files into an existing (temporary) directory."""
    save_file(adapter_state(model), str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    model.peft_config["default"].save_pretrained(str(directory))
    # PEFT keeps target_modules as a set and writes it in hash order; sort it so the same run
    # writes the same bytes in every process.
    path = directory / ADAPTER_CONFIG
    saved = json.loads(path.read_text())
    if isinstance(saved.get("target_modules"), list):
        saved["target_modules"] = sorted(saved["target_modules"])
    path.write_text(json.dumps(saved, indent=2, sort_keys=True))


def load_adapter_weights(model: Any, directory: Path, config: TrainingConfig) -> None:
    """Copy an adapter's weights into `model`'s LoRA layers, refusing anything that differs.

    The adapter must have the same rank, alpha and adapted modules as `config`: continuing
    under another scale or on other modules would silently train a different model.
    """
    from peft import set_peft_model_state_dict

    directory = Path(directory)
    cfg_file, weights_file = directory / ADAPTER_CONFIG, directory / ADAPTER_WEIGHTS
    if not cfg_file.is_file() or not weights_file.is_file():
        raise AdapterMismatchError(directory, f"expected {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS} "
                                              "(a PEFT adapter directory)")
    saved = json.loads(cfg_file.read_text())
    for key, want in (("r", config.lora_r), ("lora_alpha", config.lora_alpha)):
        if saved.get(key) != want:
            raise AdapterMismatchError(directory, f"{key}={saved.get(key)} but the training "
                                                  f"config has {want}")
    state = load_file(str(weights_file))
    expected = adapter_state(model)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise AdapterMismatchError(directory, f"different adapted modules: missing "
                                              f"{missing[:3]}, unexpected {unexpected[:3]} "
                                              f"({len(missing)} / {len(unexpected)} in all)")
    wrong = [k for k in expected if expected[k].shape != state[k].shape]
    if wrong:
        raise AdapterMismatchError(directory, f"shape of {wrong[0]} is "
                                              f"{tuple(state[wrong[0]].shape)}, expected "
                                              f"{tuple(expected[wrong[0]].shape)}")
    set_peft_model_state_dict(model, state)


def _lora_pairs(directory: Path) -> tuple[dict[str, Any], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """An adapter's config and its (A, B) matrices per adapted module (PEFT's file keys
    `<module>.lora_A.weight` / `.lora_B.weight`, module paths as PEFT writes them)."""
    directory = Path(directory)
    saved = json.loads((directory / ADAPTER_CONFIG).read_text())
    if saved.get("use_rslora") or saved.get("use_dora"):
        raise AdapterMismatchError(directory, "only plain LoRA adapters can be merged or stacked")
    state = load_file(str(directory / ADAPTER_WEIGHTS))
    pairs = {}
    for key, a in state.items():
        if key.endswith(".lora_A.weight"):
            module = key[: -len(".lora_A.weight")]
            pairs[module] = (a, state[module + ".lora_B.weight"])
    if not pairs or len(pairs) * 2 != len(state):
        raise AdapterMismatchError(directory, "expected only lora_A / lora_B weights")
    return saved, pairs


@contextmanager
def merged_adapter(base: Any, directory: Path) -> Iterator[None]:
    """Within the block `base` computes as base + the adapter merged (W + alpha/r x B A); on
    exit every weight is the very tensor it was before, so nothing drifts.

    Why: Booster's layout trains the customer's LoRA fresh on the immunized model (docs/
    results.md): the immunize adapter must act as part of the frozen base, and the base must be
    exactly the shipped model again for the next job in the process. Costs one copy of the
    adapted weights while it lasts.
    """
    saved, pairs = _lora_pairs(directory)
    scale = saved["lora_alpha"] / saved["r"]
    modules = dict(base.named_modules())
    originals: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    try:
        for name, (a, b) in pairs.items():
            path = name.removeprefix("base_model.model.")
            module = modules.get(path)
            if module is None or not hasattr(module, "weight"):
                raise AdapterMismatchError(Path(directory), f"the base has no module {path!r}")
            weight = module.weight
            delta = (b.float() @ a.float()) * scale
            if delta.shape != weight.shape:
                raise AdapterMismatchError(Path(directory), f"{path}: delta {tuple(delta.shape)}"
                                                            f" vs weight {tuple(weight.shape)}")
            originals.append((weight, weight.data))
            weight.data = (weight.data.float() + delta.to(weight.device)).to(weight.dtype)
        yield
    finally:
        for weight, data in originals:
            weight.data = data


def stack_adapters(first: Path, second: Path, out: Path) -> Path:
    """One PEFT adapter computing base + first + second: rank r1 + r2, A's stacked on rows and
    B's on columns, each B scaled so the written alpha/r reproduces both adapters' scales.

    Why: a Booster-layout `pre` job trains the customer's LoRA on top of the merged immunize
    adapter; the customer downloads one adapter that loads with `PeftModel.from_pretrained`.
    Both must adapt the same modules (a job's stages do)."""
    cfg1, pairs1 = _lora_pairs(first)
    cfg2, pairs2 = _lora_pairs(second)
    if set(pairs1) != set(pairs2):
        raise AdapterMismatchError(Path(second), "the two adapters adapt different modules")
    rank = cfg1["r"] + cfg2["r"]
    s1, s2 = cfg1["lora_alpha"] / cfg1["r"], cfg2["lora_alpha"] / cfg2["r"]
    state = {}
    for name in sorted(pairs1):
        (a1, b1), (a2, b2) = pairs1[name], pairs2[name]
        state[name + ".lora_A.weight"] = torch.cat([a1, a2], dim=0).contiguous()
        state[name + ".lora_B.weight"] = torch.cat([b1 * s1, b2 * s2], dim=1).contiguous()
    config = {**cfg2, "r": rank, "lora_alpha": rank}  # scale 1: the B's carry the scales
    for key in ("rank_pattern", "alpha_pattern"):
        config[key] = {}
    from buckle.training.checkpoint import write_atomically  # checkpoint imports this module

    def fill(tmp: Path) -> None:
        save_file(state, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))

    return write_atomically(out, fill)
