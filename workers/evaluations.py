"""Safety evaluations (POST /v1/safety/evaluations), run by a `train` worker: score a base model
or a released adapter with `buckle.evaluation` and store the report."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import update

from app.core.db import session_scope
from app.models import Adapter, SafetyEvaluation, utcnow
from app.storage import get_store

log = logging.getLogger("buckle.worker")


def run_evaluation(evaluation_id: str) -> None:
    with session_scope() as session:
        ok = session.execute(update(SafetyEvaluation)
                             .where(SafetyEvaluation.id == evaluation_id,
                                    SafetyEvaluation.status.in_(("queued", "running")))
                             .values(status="running")
                             .execution_options(synchronize_session=False)).rowcount == 1
        if not ok:
            return
        row = session.get(SafetyEvaluation, evaluation_id)
        config, adapter_key = dict(row.config), None
        if row.adapter_id:
            adapter_key = session.get(Adapter, row.adapter_id).storage_key
    try:
        report = _evaluate(config, adapter_key)
        values = {"status": "succeeded", "report": report}
    except Exception as exc:
        log.exception("evaluation %s failed", evaluation_id)
        values = {"status": "failed", "error": {"code": "evaluation_failed",
                                                "message": f"{type(exc).__name__}: {exc}",
                                                "param": None}}
    with session_scope() as session:
        session.execute(update(SafetyEvaluation).where(SafetyEvaluation.id == evaluation_id)
                        .values(finished_at=utcnow(), **values)
                        .execution_options(synchronize_session=False))


def _prompt_spec(prompt_set: dict[str, str] | None) -> str | None:
    if prompt_set is None:
        return None
    if "name" in prompt_set:
        return prompt_set["name"]
    return str(get_store().local_file(prompt_set["storage_key"]))


def _evaluate(config: dict[str, Any], adapter_key: str | None) -> dict[str, Any]:
    from buckle.evaluation.runner import EvalConfig, evaluate
    from buckle.models import load_model

    adapter = str(get_store().local_tree(adapter_key)) if adapter_key else None
    loaded = load_model(config["base_model"], adapter=adapter)
    report = evaluate(loaded, EvalConfig(
        prompts=_prompt_spec(config["prompt_set"]), limit=config["limit"],
        benign=_prompt_spec(config.get("benign_set")), benign_limit=config["benign_limit"],
        judges=tuple(config["judges"])), adapter=adapter)
    return report.to_json_dict()
