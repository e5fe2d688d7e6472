# The llm-rollout code location for Dagster on Kubernetes: the package, your release specs in
# models/ and the instance config (never examples/, the sandbox or the demo's spec). The Helm chart runs it as the user-code Deployment
# (`dagster api grpc -m llm_rollout.pipelines.definitions`) and K8sRunLauncher runs each run in a pod of
# the same image. Build from the repository root:
#   docker build -f deploy/user-code.Dockerfile -t registry.example.com/llm/llm-rollout-user-code:0.1.0 .
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    LLM_ROLLOUT_MODELS_DIR=/opt/llm-rollout/models

WORKDIR /opt/llm-rollout

# dependencies first: they change far less often than the code and the specs
COPY pyproject.toml README.md ./
COPY llm_rollout/ llm_rollout/
RUN pip install --no-compile . \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin dagster \
    && mkdir -p "$DAGSTER_HOME" \
    && chown dagster "$DAGSTER_HOME"

COPY workspace.yaml ./
COPY llm_rollout/k8s/dagster/dagster.yaml /opt/dagster/dagster_home/dagster.yaml
COPY models/ models/

USER 10001
EXPOSE 3030
CMD ["dagster", "api", "grpc", "-m", "llm_rollout.pipelines.definitions", "-h", "0.0.0.0", "-p", "3030"]
