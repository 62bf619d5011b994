# syntax=docker/dockerfile:1
#
# One image for every role: `serve` (the default), `worker`, `strategies`, `db upgrade`, `tokens ...`, `backtest`.
#
#   docker build -t execsvc .
#   docker run --rm execsvc --help
#
# Where the code lives: execsvc finds its contract and its migrations relative to its source tree
# (api/app.py SPEC_PATH and db/migrate.py ALEMBIC_DIR are `Path(__file__).parents[3] / "openapi" | "alembic"`), so a
# plain wheel in site-packages would look for them in .../lib/python3.11/. The image therefore keeps the repository's
# layout under /app (src/, alembic/, alembic.ini, openapi/) and installs the project into the venv in editable mode:
# setuptools writes a .pth file naming /app/src, the `execsvc` console script and the dist-info, and from
# /app/src/execsvc the parents[3] of a module is /app, where openapi/ and alembic/ are. The generated contract models
# (src/execsvc/contract/) are ordinary modules of that tree.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: a venv with the pinned runtime dependencies (never the [dev] extra) and the project ----
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml or constraints.txt change. The list
# is [project].dependencies of pyproject.toml (the runtime ones), each pinned by constraints.txt; every one of them
# ships manylinux wheels for CPython 3.11, so the slim image needs no compiler.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --requirement /tmp/requirements.txt --constraint constraints.txt

# The project itself, laid out as in the repository (see the top of this file). --no-deps: everything it needs is
# installed above, at the pinned versions.
COPY README.md alembic.ini ./
COPY src/ src/
COPY alembic/ alembic/
COPY openapi/ openapi/
RUN pip install --no-deps --editable /app \
    && python -c "import execsvc.api.app as a, execsvc.db.migrate as m; assert a.SPEC_PATH.is_file(); m.head_revision()"

# ---- runtime: the venv and the source tree, nothing else ----
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    EXECSVC_SQLITE_PATH=/data/execsvc.db

# An unprivileged user; the code stays root-owned (read-only to the service). /data holds the embedded SQLite file
# when no EXECSVC_DATABASE_URL is given (a `docker run` without PostgreSQL).
RUN groupadd --system --gid 10001 execsvc \
    && useradd --system --uid 10001 --gid execsvc --home-dir /data --no-create-home --shell /usr/sbin/nologin execsvc \
    && mkdir /data \
    && chown execsvc:execsvc /data

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app

WORKDIR /app
# Numeric, so that a runtime that only allows non-root users (Kubernetes runAsNonRoot) can verify it.
USER 10001:10001

EXPOSE 8000

# /healthz answers while the process lives; urlopen raises (exit 1) on a refused connection or an error status.
# Other roles (worker, migrations) override or disable it in docker-compose.yml.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

ENTRYPOINT ["execsvc"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
