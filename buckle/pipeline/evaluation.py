"""The job's evaluation: its settings, the base model's and each adapter's safety report and
utility, each stored under a key of everything that decides it, so a resumed job, a later
`auto` round or another job on the same model reuses finished work instead of decoding again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from buckle.assets import sha256_file
from buckle.atomic import atomic_write_json
from buckle.data.records import Conversation
from buckle.data.sources import load_prompts
from buckle.evaluation.report import SCHEMA_VERSION, SafetyReport
from buckle.evaluation.runner import EvalConfig, evaluate
from buckle.evaluation.utility import utility
from buckle.evaluation.weights import judges_fingerprint
from buckle.generation import GenerationEngine
from buckle.generation.precision import resolve_dtype
from buckle.models import load_model
from buckle.pipeline.spec import JobSpec


class Events(Protocol):
    """What evaluation needs of the runner's progress reporter."""

    def __call__(self, event: Any, message: str, within: float = 0.0,
                 phase: str | None = None, **data: Any) -> None: ...

    def check(self, where: str) -> None: ...


def asr_of(report: SafetyReport) -> float:
    """The report's headline ASR (0 when it has no harmful prompts)."""
    return report.asr.value if report.asr is not None else 0.0


def eval_config_of(spec: JobSpec) -> EvalConfig:
    """The job's evaluation settings, judged by `refusal` + `harm` (the headline ASR)."""
    s = spec.safety
    return EvalConfig(prompts=s.eval_prompts, limit=s.eval_limit, benign=s.benign_prompts,
                      benign_limit=s.benign_limit, borderline=s.borderline_prompts,
                      borderline_limit=s.borderline_limit, judges=("refusal", "harm"),
                      max_new_tokens=s.eval_max_new_tokens)


def evaluation_prompts(config: EvalConfig) -> set[str]:
    """Every prompt an evaluation will send: training and curation data must not contain them."""
    texts = {p.prompt.strip() for p in load_prompts(config.prompts, limit=config.limit,
                                                     offset=config.offset)}
    for name, limit in ((config.benign, config.benign_limit),
                        (config.borderline, config.borderline_limit)):
        if name:
            texts |= {p.prompt.strip() for p in load_prompts(name, limit=limit)}
    return texts


def _weights_id(adapter: Path | None) -> str:
    """What a stored report's key says of the weights: the adapter's sha256, or "base"."""
    return sha256_file(adapter / "adapter_model.safetensors") if adapter is not None else "base"


class Models:
    """The base model and the last adapter loaded on it, so a round's evaluation and utility
    share one load (a 0.5B model takes seconds to load); older adapters are let go."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self._adapter: Path | None = None
        self._model: Any = None

    def get(self, adapter: Path | None) -> Any:
        if adapter is None:
            return self.base
        if adapter != self._adapter:
            self._model = None  # free the previous copy before loading the next
            self._model = load_model(self.base.path or self.base.name, adapter=adapter)
            self._adapter = adapter
        return self._model


def evaluate_cached(models: Models, config: EvalConfig, adapter: Path | None, folder: Path,
                    events: Events) -> tuple[SafetyReport, Path]:
    """Evaluate the base model (adapter None) or base + adapter, reusing a stored report.

    The base report is keyed by (model fingerprint, eval settings) and shared by every job on
    that model; an adapter's by its weights' sha256.
    """
    settings = {k: v for k, v in asdict(config).items() if k != "rubric"}
    # The dtype replies are decoded in, resolved (the environment or the CPU may decide it);
    # left out of the key when it is the model's own, so reports stored before bf16 decoding
    # stay reusable (reports were keyed by dtype from the start of bf16 decoding).
    dtype = resolve_dtype(settings.pop("precision"), models.base.dtype, models.base.device)
    if dtype != models.base.dtype:
        settings["decode_dtype"] = str(dtype)
    weights = _weights_id(adapter)
    # the report schema and the judges' weights are part of the key: a report measured with
    # other judges (or the keyword-ASR schema 1) is never reused next to a fresh one
    key = hashlib.sha256(json.dumps([models.base.fingerprint, weights, settings, SCHEMA_VERSION,
                                     judges_fingerprint()],
                                    sort_keys=True).encode()).hexdigest()[:24]
    path = folder / f"{key}.json"
    if path.is_file():
        return SafetyReport.read_json(path), path
    what = "base model" if adapter is None else "adapter"
    events("evaluate", f"evaluating the {what}", 0.0 if adapter is None else 0.5)
    events.check(f"before evaluating the {what}")
    model = models.get(adapter)
    report = evaluate(model, config, adapter=str(adapter) if adapter else None)
    report.write_json(path)
    events("evaluate", f"{what}: ASR {asr_of(report):.0%}", 0.5 if adapter is None else 1.0,
           target=what, asr=asr_of(report))
    return report, path


def utility_cached(models: Models, adapter: Path | None, validation: list[Conversation],
                   precision: str | None, folder: Path, events: Events) -> dict[str, Any]:
    """`buckle.evaluation.utility` on the validation file, decoded in the evaluation's
    precision and stored like evaluation reports (the decode dtype is part of the key: exact
    match is measured on generated replies)."""
    weights = _weights_id(adapter)
    data = "\n".join(c.to_json() for c in validation)
    # v2: v1 keys carried no dtype, so a v1 file may hold bf16-decoded replies under fp32's key
    dtype = resolve_dtype(precision, models.base.dtype, models.base.device)
    key = hashlib.sha256(json.dumps(["utility-v2", models.base.fingerprint, weights, data,
                                     str(dtype)]).encode()).hexdigest()[:24]
    path = folder / f"utility-{key}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    what = "base model" if adapter is None else "adapter"
    events("evaluate", f"measuring the {what}'s utility on {len(validation)} held-out lines")
    events.check(f"before measuring the {what}'s utility")
    model = models.get(adapter)
    result = utility(model, validation,
                     engine=GenerationEngine.from_loaded(model, precision=precision))
    atomic_write_json(path, result)
    return result


def metrics(report: SafetyReport | None) -> dict[str, Any] | None:
    """A report's rates as plain JSON (the job result's `safety` block)."""
    if report is None:
        return None
    fields = ("asr", "keyword_asr", "harmful_rate", "over_refusal_rate",
              "borderline_over_refusal_rate")
    return {"n": report.n, **{f: (getattr(report, f).model_dump() if getattr(report, f)
                                  else None) for f in fields}}
