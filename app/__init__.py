"""The service: HTTP API (FastAPI, `app/api`), persistence (SQLAlchemy models, Alembic
migrations, `app/models`, `app/core/db.py`), settings (`app/core/config.py`) and the one module
that reaches the broker (`app/broker.py`). It calls the `buckle` library; it never imports
`workers/`."""
