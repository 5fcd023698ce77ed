# Glidepath: API, Celery worker and migrations all run from this one image.
#
# torch comes from PyPI as pip resolves `torch>=2.4,<3` (on linux/amd64 that wheel bundles CUDA).
# For a smaller CPU-only image, or a GPU image pinned to a CUDA version, build from a CUDA base
# image and/or install torch first from the matching index, e.g.
#   pip install torch --index-url https://download.pytorch.org/whl/cpu    (or .../whl/cu124)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GLIDEPATH_DATA_DIR=/data

WORKDIR /app

# Only what the package needs: keeps a local .venv/.glidepath out of the image even without a
# .dockerignore. migrations/ must sit next to service/ (service/kit/migrate.py finds it there),
# which the editable install below preserves.
COPY pyproject.toml README.md alembic.ini /app/
COPY service /app/service
COPY worker /app/worker
COPY migrations /app/migrations

RUN pip install -e . \
    && useradd --create-home --uid 1000 glidepath \
    && mkdir -p /data \
    && chown glidepath:glidepath /data

USER glidepath
VOLUME ["/data"]
EXPOSE 8000

CMD ["glidepath", "api", "--host", "0.0.0.0", "--port", "8000"]
