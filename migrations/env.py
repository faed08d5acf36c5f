"""Alembic environment: the URL comes from Settings (or `-x url=...`), metadata from app.models."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from app.core.config import get_settings
from app.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    return (context.get_x_argument(as_dictionary=True).get("url")
            or config.attributes.get("url")
            or get_settings().resolved_database_url)


def _configure(**kwargs) -> None:
    url = str(kwargs.get("url") or kwargs["connection"].engine.url)
    context.configure(target_metadata=target_metadata, compare_type=True,
                      render_as_batch=url.startswith("sqlite"), **kwargs)


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    if url.startswith("sqlite"):
        from app.core.db import engine_for  # creates the parent directory, sets WAL

        engine = engine_for(url)
    else:
        engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
