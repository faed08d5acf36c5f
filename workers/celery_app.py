"""The worker's Celery app: built from `app.broker` (all of its configuration lives there, so the
API and the workers cannot disagree). Start workers with `-A workers.celery_app:celery_app`."""

from __future__ import annotations

from app.broker import DEFAULT_QUEUE, TRAIN_QUEUE, make_celery, sender

celery_app = make_celery()

__all__ = ["DEFAULT_QUEUE", "TRAIN_QUEUE", "celery_app", "make_celery", "sender"]
