"""Buckle: harden customers' LoRA fine-tunes against jailbreak-tuning with CTRL-curated data.

`buckle` is the pure library (models, data, curation, training, evaluation, pipeline). It never
imports FastAPI, Celery or the database layer; `app/` and `workers/` build on it.
"""

__version__ = "0.1.0"
