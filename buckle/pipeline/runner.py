"""`run(spec)`: one customization job, start to finish, resumable by re-running it.

validate -> curate-or-reuse the safety corpus -> train per policy -> evaluate -> save.

Every step is idempotent on `spec.work_dir`: the corpus store, the trainer's checkpoints and the
evaluation files are all keyed so that a second call with the same spec picks up finished work
and continues unfinished work. That is the whole resume story for a Celery worker killed
mid-job: the next worker calls `run` again with the same spec.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from buckle.assets import sha256_file
from buckle.atomic import atomic_write_json
from buckle.data.records import Conversation
from buckle.data.validation import load_conversations_jsonl
from buckle.errors import Cancelled
from buckle.evaluation.report import SafetyReport, compare_chart
from buckle.evaluation.runner import EvalConfig
from buckle.models import load_model
from buckle.pipeline.doses import restore_share, safety_stage_config, unlikelihood_weight
from buckle.pipeline.evaluation import (
    Models,
    asr_of,
    eval_config_of,
    evaluate_cached,
    evaluation_prompts,
    metrics,
    utility_cached,
)
from buckle.pipeline.policies import AutoPolicy, SafetyPolicy, Stage, get_policy
from buckle.pipeline.release import base_model_card, make_portable, public_report, scrub_paths
from buckle.pipeline.safety_data import (
    benign_pairs,
    decline_negatives,
    harmful_pairs,
    safety_data,
)
from buckle.pipeline.spec import (
    CancelCheck,
    JobCancelled,
    JobResult,
    JobSpec,
    ProgressCallback,
    ProgressEvent,
)
from buckle.pipeline.spec import (
    Stage as EventStage,
)
from buckle.settings import buckle_home
from buckle.training import (
    BoosterConfig,
    PlasticityConfig,
    TrainingConfig,
    TrainProgress,
    UnlikelihoodConfig,
    stack_adapters,
    train_lora,
)

# Share of the job's progress bar each phase owns (curation and training dominate on CPU).
_SPAN = {"validate": (0.0, 0.02), "curate": (0.02, 0.30), "train": (0.30, 0.85),
         "evaluate": (0.85, 0.98), "save": (0.98, 1.0)}
AUTO_STAGE_BASE = 100  # `auto` restore rounds train in train/101-restore-1, 102-...
REPORT_FILE, CHART_FILE, JOB_FILE = "safety_report.json", "safety_report.png", "buckle_job.json"


class _Events:
    """Turns phase-local progress into job-level `ProgressEvent`s and checks cancellation."""

    def __init__(self, progress: ProgressCallback | None, should_cancel: CancelCheck | None):
        self._progress, self._cancel = progress, should_cancel

    def __call__(self, event: EventStage, message: str, within: float = 0.0,
                 phase: str | None = None, **data: Any) -> None:
        lo, hi = _SPAN.get(phase or event, (1.0, 1.0))
        if self._progress is not None:
            self._progress(ProgressEvent(stage=event, message=message, data=data,
                                         fraction=min(1.0, lo + (hi - lo) * within)))

    def check(self, where: str) -> None:
        if self._cancel is not None and self._cancel():
            raise JobCancelled(f"job cancelled {where}; finished work is kept in the work dir")

    @property
    def should_cancel(self) -> CancelCheck | None:
        return self._cancel


def run(spec: JobSpec, progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None) -> JobResult:
    """Run a job; see the module docstring. Raises `JobCancelled`, `DatasetFormatError`
    (customer file refused before any training), `UnknownNameError` (model, policy, source)."""
    events = _Events(progress, should_cancel)
    work = Path(spec.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    policy = get_policy(spec.safety.policy)
    hp = spec.hyperparameters

    events("validate", f"loading {spec.model} and validating the training file")
    base = load_model(spec.model)
    customer = load_conversations_jsonl(spec.training_file, tokenizer=base.tokenizer,
                                        max_tokens=hp.max_seq_len)
    validation = (load_conversations_jsonl(spec.validation_file, tokenizer=base.tokenizer,
                                           max_tokens=hp.max_seq_len)
                  if spec.validation_file else [])
    eval_config = eval_config_of(spec)
    held_out = evaluation_prompts(eval_config)
    events("validate", f"{len(customer)} training conversations are valid", 1.0,
           examples=len(customer))
    events.check("after validation")

    safety, corpus_info = safety_data(policy, spec, base, held_out, events)
    strata = [p["items"] for p in (corpus_info.get("parts") or {}).values()]
    booster = spec.safety.immunize.method == "booster" and policy.immunizes
    harmful = harmful_pairs(spec, held_out) if booster else []
    share = restore_share(policy, spec.safety)
    stages = policy.stages(customer, safety, ratio=spec.safety.curated_ratio, seed=spec.seed,
                           strata=strata, harmful=harmful, restore_share=share)
    if policy.immunizes and spec.safety.immunize.layout == "merged":
        stages = [stages[0], *(replace(s, on_merged=True) for s in stages[1:])]
    train_config = TrainingConfig(n_epochs=hp.n_epochs, batch_size=hp.batch_size,
                                  learning_rate=hp.learning_rate, lora_r=hp.lora_r,
                                  lora_alpha=hp.lora_alpha, max_seq_len=hp.max_seq_len,
                                  seed=spec.seed, checkpoint_every=spec.checkpoint_every)
    safety_config = safety_stage_config(train_config, policy, spec.safety)
    im = spec.safety.immunize
    booster_config = BoosterConfig(weight=im.weight, step=im.step) if booster else None
    plasticity = PlasticityConfig(weight=im.plasticity_weight, step=im.step) \
        if booster and im.plasticity_weight else None
    benign = benign_pairs(spec, held_out) if plasticity else []
    weight = unlikelihood_weight(policy, spec.safety, corpus_info)
    negatives = decline_negatives(safety, corpus_info) if weight else []
    trainer = _StageTrainer(base, train_config, work / "train", events, safety_config,
                            booster_config,
                            UnlikelihoodConfig(weight=weight) if weight else None, negatives,
                            plasticity, benign)
    adapter = trainer.run_all(stages)
    events.check("after training")

    base_report = adapter_report = base_report_path = None
    rounds: list[dict[str, Any]] = []
    models = Models(base)
    if spec.evaluate or isinstance(policy, AutoPolicy):
        base_report, base_report_path = evaluate_cached(models, eval_config, None,
                                                        buckle_home() / "evals", events)
        adapter_report, _ = evaluate_cached(models, eval_config, adapter, work / "eval", events)
        if isinstance(policy, AutoPolicy):
            adapter, adapter_report, rounds = _auto_rounds(
                spec, models, base_report, adapter, adapter_report, safety, trainer, eval_config,
                work, events, strata, share)

    utility = None
    if spec.evaluate and validation:
        utility = {"base": utility_cached(models, None, validation, eval_config.precision,
                                          buckle_home() / "evals", events),
                   "adapter": utility_cached(models, adapter, validation, eval_config.precision,
                                             work / "eval", events)}
    events("save", "writing the adapter and its safety report")
    out = _save(work, spec, policy, adapter, adapter_report, base_report, stages, corpus_info,
                rounds, base)
    sha = {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.is_file()}
    safety_summary = {"policy": policy.name, "base": metrics(base_report),
                      "adapter": metrics(adapter_report), "rounds": rounds,
                      "corpus": corpus_info, "utility": utility,
                      "dose": {"curated_ratio": spec.safety.curated_ratio,
                               "safety_epochs": safety_config.n_epochs,
                               "safety_learning_rate": safety_config.learning_rate,
                               "restore_share": share,
                               "unlikelihood": weight,
                               "immunize": spec.safety.immunize.method if booster else None,
                               "immunize_plasticity": plasticity.weight if plasticity else 0,
                               "immunize_layout": (spec.safety.immunize.layout
                                                   if policy.immunizes else None)},
                      "base_report": str(base_report_path) if base_report_path else None}
    events("done", "job finished", 1.0, adapter_dir=str(out))
    return JobResult(adapter_dir=str(out), adapter_sha256=sha,
                     report_path=str(out / REPORT_FILE) if adapter_report else None,
                     safety=safety_summary, trained_tokens=trainer.trained_tokens,
                     checkpoints=trainer.checkpoints)


# ---------------------------------------------------------------------- training
class _StageTrainer:
    """Runs stages in order on one adapter; each stage has its own resumable directory."""

    def __init__(self, base: Any, config: TrainingConfig, root: Path, events: _Events,
                 safety_config: TrainingConfig | None = None,
                 booster: BoosterConfig | None = None,
                 unlikelihood: UnlikelihoodConfig | None = None,
                 negatives: Sequence[Conversation] = (),
                 plasticity: PlasticityConfig | None = None,
                 benign: Sequence[Conversation] = ()) -> None:
        self.base, self.config, self.root, self.events = base, config, root, events
        # a stage of safety data only (immunize, restore) trains at the job's safety dose
        self.safety_config = safety_config or config
        self.booster = booster  # Booster's term, on the stages that carry harmful pairs
        self.plasticity, self.benign = plasticity, tuple(benign)  # rides with Booster's term
        # the unlikelihood term and its pairs, on the stages of safety data only
        self.unlikelihood, self.negatives = unlikelihood, tuple(negatives)
        self.trained_tokens = 0
        self.checkpoints: list[dict[str, Any]] = []
        self._planned = 0
        self._done_weight = 0
        self._step_offset = 0  # optimizer steps of the stages before this one (global steps)

    def run_all(self, stages: Sequence[Stage], init: Path | None = None) -> Path:
        self._planned = sum(len(s.conversations) for s in stages) or 1
        self._done_weight = 0
        self._step_offset = 0
        adapter = init
        for k, stage in enumerate(stages):
            adapter = self.run_stage(stage, k, adapter)
        assert adapter is not None, "a policy produced no training stage"
        return adapter

    def run_stage(self, stage: Stage, k: int, init: Path | None) -> Path:
        out = self.root / f"{k}-{stage.name}"
        weight = len(stage.conversations)
        offset = self._step_offset
        last = {"within": self._done_weight / self._planned}

        def progress(p: TrainProgress) -> None:
            within = (self._done_weight + weight * p.step / max(1, p.total_steps)) / self._planned
            last["within"] = within
            self.events("train", f"{stage.name}: step {p.step}/{p.total_steps} loss {p.loss:.3f}",
                        within, stage=stage.name, step=p.step, total_steps=p.total_steps,
                        loss=p.loss, tokens_per_s=p.tokens_per_s, eta_s=p.eta_s)

        def on_checkpoint(step: int, folder: Path, loss: float | None) -> None:
            # Every resumable state the trainer wrote or starts from, the stage's final adapter
            # included; a resumed job reports some again (the service records them once).
            # `step` is global across the policy's stages, so two stages never collide.
            record = {"step": offset + step, "stage_step": step, "path": str(folder),
                      "stage": stage.name,
                      "metrics": {"loss": loss} if loss is not None else {}}
            if all(c["step"] != record["step"] for c in self.checkpoints):
                self.checkpoints.append(record)
            self.events("checkpoint", f"{stage.name}: checkpoint at step {step}",
                        last["within"], phase="train", **record)

        try:
            safety_only = stage.safety_items == len(stage.conversations) > 0
            config = self.safety_config if safety_only else self.config
            negatives = self.negatives if safety_only else ()  # empty when the term is off
            if negatives:
                config = config.model_copy(update={"unlikelihood": self.unlikelihood})
            benign = self.benign if stage.harmful else ()
            if stage.harmful:  # Booster's term (and its benign twin) run where its pairs are
                config = config.model_copy(update={"booster": self.booster,
                                                   "plasticity": self.plasticity if benign
                                                   else None})
            merged = init if stage.on_merged else None
            result = train_lora(self.base, stage.conversations, config, out,
                                init_adapter=None if merged else init, base_adapter=merged,
                                harmful=stage.harmful, negatives=negatives, benign=benign,
                                progress=progress,
                                should_cancel=self.events.should_cancel,
                                on_checkpoint=on_checkpoint)
        except Cancelled as exc:
            raise JobCancelled(f"job cancelled during training stage {stage.name!r}: {exc}") \
                from exc
        self.trained_tokens += result.trained_tokens
        self._done_weight += weight
        self._step_offset += result.steps
        if merged is not None:  # one adapter: the merged one under the fresh one
            return stack_adapters(merged, Path(result.adapter_dir), out / "stacked")
        return Path(result.adapter_dir)


def _auto_rounds(spec: JobSpec, models: Models, base_report: SafetyReport, adapter: Path,
                 report: SafetyReport, safety: list[Conversation], trainer: _StageTrainer,
                 eval_config: EvalConfig, work: Path, events: _Events, strata: list[int],
                 share: float) -> tuple[Path, SafetyReport, list[dict[str, Any]]]:
    """`auto`: restore on the curated corpus while ASR rises more than `max_asr` over base."""
    allowed = spec.safety.max_asr if spec.safety.max_asr is not None else 0.1
    base_asr = asr_of(base_report)
    rounds = [{"round": 0, "stage": "during", "asr": asr_of(report), "base_asr": base_asr}]
    for r in range(1, spec.safety.auto_max_rounds + 1):
        if asr_of(report) - base_asr <= allowed:
            break
        events.check(f"before restore round {r}")
        stage = AutoPolicy.restore_stage(safety, r, seed=spec.seed, strata=strata, share=share)
        adapter = trainer.run_stage(stage, AUTO_STAGE_BASE + r, adapter)
        report, _ = evaluate_cached(models, eval_config, adapter, work / "eval", events)
        rounds.append({"round": r, "stage": stage.name, "asr": asr_of(report),
                       "base_asr": base_asr})
    met = asr_of(report) - base_asr <= allowed
    rounds[-1]["target_met"] = met
    if not met:  # say so: the adapter is released, but its report must not read as a success
        events("evaluate", f"auto: ASR {asr_of(report):.0%} is still above the target "
               f"{base_asr + allowed:.0%} after {len(rounds) - 1} restore rounds (budget "
               f"auto_max_rounds={spec.safety.auto_max_rounds})", 1.0, target_met=False,
               asr=asr_of(report), target=base_asr + allowed)
    return adapter, report, rounds


# ---------------------------------------------------------------------- output
def _save(work: Path, spec: JobSpec, policy: SafetyPolicy, adapter: Path,
          report: SafetyReport | None, base_report: SafetyReport | None,
          stages: Sequence[Stage], corpus_info: dict[str, Any],
          rounds: list[dict[str, Any]], base: Any) -> Path:
    """The released adapter folder (portable, no server paths), written whole (temp dir +
    rename) or not at all."""
    final = work / "output"
    tmp = work / f".output-{time.time_ns()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(adapter, tmp, ignore=shutil.ignore_patterns("*.json.tmp", ".*"))
    make_portable(tmp, base_model_card(base.name, base.fingerprint))
    if report is not None:
        label = "adapter, no policy" if policy.name == "none" else f"hardened ({policy.name})"
        public = public_report(report, label)
        public.write_json(tmp / REPORT_FILE)
        shown = [public_report(base_report, "base"), public] if base_report else [public]
        labels = ["base model", label][-len(shown):]
        compare_chart(shown, tmp / CHART_FILE, labels=labels,
                      title=f"{scrub_paths(base.name)}: {' vs. '.join(labels)}\n"
                            f"harmful prompts: {Path(public.prompt_set).stem}, n={public.n}")
    atomic_write_json(tmp / JOB_FILE, scrub_paths({
        "spec": json.loads(spec.model_dump_json()), "policy": policy.name,
        "stages": [{"name": s.name, "items": len(s.conversations),
                    "safety_items": s.safety_items} for s in stages],
        "corpus": corpus_info, "auto_rounds": rounds,
        "base_safety": metrics(base_report), "adapter_safety": metrics(report)}))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final
