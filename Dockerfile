# One image for the API and the workers (docker-compose.yml picks the command).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/buckle
# torch first (the default PyPI wheel ships CUDA for the GPU worker), then the project
RUN pip install "torch==2.13.0"
COPY pyproject.toml README.md alembic.ini ./
COPY buckle ./buckle
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
RUN pip install -e ".[s3]"
EXPOSE 8000
CMD ["buckle", "api", "--host", "0.0.0.0", "--port", "8000"]
