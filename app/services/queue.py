"""Hand work to the workers. Called only after the row's transaction has committed, so a worker
never receives an id it cannot read yet. Tasks are sent by name: the API never imports the
worker code (or torch)."""

from __future__ import annotations

from celery import chain, signature


def submit_job(job_id: str) -> None:
    """validate (light, `default` queue) then train (`train` queue), as one chain."""
    from workers.celery_app import sender

    celery_app = sender()
    chain(signature("buckle.validate_job", args=(job_id,), immutable=True, queue="default",
                    app=celery_app),
          signature("buckle.run_job", args=(job_id,), immutable=True, queue="train",
                    app=celery_app)).apply_async()


def submit_screening(file_id: str) -> None:
    """Screen an uploaded training file with the harm judge (light, `default` queue)."""
    from workers.celery_app import sender

    sender().send_task("buckle.screen_file", args=(file_id,), queue="default")


def submit_evaluation(evaluation_id: str) -> None:
    from workers.celery_app import sender

    sender().send_task("buckle.run_evaluation", args=(evaluation_id,), queue="train")
