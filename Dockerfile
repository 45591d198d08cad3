# syntax=docker/dockerfile:1
# signoff server image. Build: docker build -t signoff .   Run and configure: docs/operations.md
# tests/test_container.py checks this file, and runs its entrypoint and health check in .venv.

# --- builder: wheels of the workspace's two members (pyproject.toml: server/ and
# clients/python/, each with its LICENSE), then one virtualenv with them and their
# dependencies, with the slack extra so the image can post interactive approvals (binary
# wheels only: the slim image has no compiler, and none is needed).
FROM python:3.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY clients/python clients/python
COPY server server
# The server wheel packages the example bundle as its default policy.
COPY examples/policies examples/policies
# The versions the tests ran with (scripts/lock).
COPY constraints.txt .
RUN pip wheel --no-deps --wheel-dir /wheels ./clients/python ./server \
 && python -m venv /opt/signoff \
 && /opt/signoff/bin/pip install --only-binary=:all: -c constraints.txt \
      /wheels/signoff_client-*.whl "$(echo /wheels/signoff-[0-9]*.whl)[slack]"

# --- runtime: the virtualenv, the default policy bundle, a non-root user, nothing else.
FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="signoff" \
      org.opencontainers.image.description="signoff: the execution control plane for AI agents (gRPC server)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 signoff \
 && useradd --system --uid 10001 --gid signoff --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin signoff \
 && mkdir -p /data /etc/signoff \
 && chown signoff:signoff /data
COPY --from=builder /opt/signoff /opt/signoff
# The example bundle. The server's built-in default (examples/ next to its source) does not
# exist in an installed package, hence SIGNOFF_POLICY. Mount your own bundle over /app/policies.
COPY examples/policies /app/policies
# Every serve option set here can be overridden with `docker run -e`. Listening on 0.0.0.0
# needs an auth config (development mode is loopback only): mount one at this path.
ENV PATH="/opt/signoff/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SIGNOFF_HOST=0.0.0.0 \
    SIGNOFF_PORT=50051 \
    SIGNOFF_DATABASE_URL=sqlite:////data/signoff.db \
    SIGNOFF_POLICY=/app/policies \
    SIGNOFF_AUTH_CONFIG=/etc/signoff/auth.yaml \
    SIGNOFF_LOG_LEVEL=INFO
# The SQLite database (and its WAL files) live here; owned by the signoff user.
WORKDIR /data
VOLUME /data
USER 10001:10001
# gRPC; and Prometheus metrics when SIGNOFF_METRICS_PORT=9464 is set (off by default).
EXPOSE 50051 9464
# gRPC health (grpc.health.v1.Health/Check, no credentials needed) on the SIGNOFF_PORT the
# server listens on; exit 0 only when SERVING. Plaintext only: with an mtls auth config,
# replace it (docs/operations.md).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; c = grpc.insecure_channel('127.0.0.1:' + os.environ.get('SIGNOFF_PORT', '50051')); f = g.HealthStub(c).Check.future(h.HealthCheckRequest(), timeout=5); e = f.exception(); print(e.code().name if e else h.HealthCheckResponse.ServingStatus.Name(f.result().status)); sys.exit(e is not None or f.result().status != h.HealthCheckResponse.SERVING)"]
ENTRYPOINT ["signoff"]
CMD ["serve"]
