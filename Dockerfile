# mockserver: the fake APIMart Midjourney video API.
#   docker build -t mockserver .
#   docker run --rm -p 8000:8000 -e MOCKSERVER_TASK_SECONDS=2 mockserver
# Every setting is a MOCKSERVER_* variable (see the README); the results' base URL
# defaults to the request's host, or set MOCKSERVER_PUBLIC_URL. The container listens
# beyond loopback: set MOCKSERVER_CONTROL_TOKEN to protect /__mock__/ (or MOCKSERVER_CONTROL=0).
# The health check reads GET /healthz, which answers with or without the control plane.
# BASE is the official image; a test builds on a locally made base with the same tools.
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md apimart_mockserver.py ./
COPY spec ./spec
COPY mockserver ./mockserver
COPY contract ./contract
RUN pip install . \
    && useradd --create-home --uid 10001 mock \
    && mkdir -p /data && chown mock /data

USER mock
ENV MOCKSERVER_HOST=0.0.0.0 \
    MOCKSERVER_PORT=8000
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('MOCKSERVER_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200 else 1)"]
CMD ["mockserver", "serve"]
