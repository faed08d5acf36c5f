"""Celery glue: the app and its configuration (celery_app), thin tasks (tasks), and the job
runner they call (job_runner), which wraps `buckle.pipeline.run` with leases and callbacks."""
