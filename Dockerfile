# syntax=docker/dockerfile:1
#
# Exchange order connector image.
#
#   docker build -t exchange-order-connector:local .
#   docker run --rm exchange-order-connector:local --help
#
# Build context: connector/, avro/, pyproject.toml, setup.py, README.md, requirements.lock
# (everything else is excluded by .dockerignore). Dependencies come only from the pinned and
# hashed requirements.lock; the project itself is installed with --no-deps on top of it.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: a self-contained virtualenv in /opt/venv ---------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when the lock file changes.
# --require-hashes: every file pip downloads must match a sha256 in the lock (`make lock`).
COPY requirements.lock ./
RUN pip install --no-deps --require-hashes -r requirements.lock

COPY pyproject.toml setup.py README.md ./
COPY avro ./avro
COPY connector ./connector
RUN pip install --no-deps . \
 && pip check \
 && python -m compileall -q /opt/venv \
 && connector --help > /dev/null

# --- runtime: slim base + the virtualenv, running as an unprivileged user -------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG APP_UID=10001
ARG APP_GID=10001

LABEL org.opencontainers.image.title="exchange-order-connector" \
      org.opencontainers.image.description="Kafka connector: query-orders commands in, normalized Avro open-order snapshots out" \
      org.opencontainers.image.source="https://github.com/example/exchange-order-connector"

# A fixed numeric uid/gid so Kubernetes runAsNonRoot can verify it without a passwd lookup.
# /srv/sandbox is where `connector sandbox` writes its demo accounts file in docker compose
# (a named volume initialised from this directory, so it is owned by the app user).
RUN groupadd --system --gid "${APP_GID}" connector \
 && useradd --system --uid "${APP_UID}" --gid connector --no-create-home \
            --home-dir /nonexistent --shell /usr/sbin/nologin connector \
 && mkdir -p /srv/sandbox /var/lib/connector \
 && chown "${APP_UID}:${APP_GID}" /srv/sandbox /var/lib/connector

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONNECTOR_WEB_PORT=6066 \
    CONNECTOR_DATA_DIR=/tmp/connector-data

USER ${APP_UID}:${APP_GID}
WORKDIR /var/lib/connector

EXPOSE 6066

# Liveness of the worker's web server. python:slim has no curl, so use the stdlib.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('CONNECTOR_WEB_PORT', '6066'); sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % port, timeout=4).status == 200 else 1)"]

ENTRYPOINT ["connector"]
CMD ["worker"]
