# syntax=docker/dockerfile:1
# llm-rollout serving image built on nvidia/cuda, for teams that patch vLLM.
# Rendered by llm-rollout for {name}; edit the template in images/vllm/, not this file.
# nvidia/cuda ships no Python: the build installs it, then copies a self-contained venv.
ARG CUDA_VERSION={cuda_version}
ARG UBUNTU_VERSION=22.04

FROM nvidia/cuda:${{CUDA_VERSION}}-devel-ubuntu${{UBUNTU_VERSION}} AS build
ARG PYTHON_VERSION=3.11
ENV DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends "python${{PYTHON_VERSION}}" \
      "python${{PYTHON_VERSION}}-venv" "python${{PYTHON_VERSION}}-dev" git build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN "python${{PYTHON_VERSION}}" -m venv /opt/vllm
ENV PATH=/opt/vllm/bin:$PATH
# Pinned: the tag of this image is a hash of this file, so the version is part of it.
RUN pip install --no-cache-dir "vllm=={vllm_version}"

FROM nvidia/cuda:${{CUDA_VERSION}}-runtime-ubuntu${{UBUNTU_VERSION}}
ARG PYTHON_VERSION=3.11
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends "python${{PYTHON_VERSION}}" libgomp1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/vllm /opt/vllm
ENV PATH=/opt/vllm/bin:$PATH \
    VLLM_NO_USAGE_STATS=1

LABEL org.opencontainers.image.title="{name}-vllm" \
      org.opencontainers.image.description="vLLM {vllm_version} on CUDA {cuda_version} serving {source_repo}" \
      org.opencontainers.image.source="{image_source}" \
      org.opencontainers.image.revision="{source_revision}" \
      org.opencontainers.image.version="{vllm_version}" \
      org.opencontainers.image.vendor="llm-rollout" \
      io.llm-rollout.vllm-version="{vllm_version}" \
      io.llm-rollout.model-repo="{source_repo}"

COPY healthcheck.py /usr/local/bin/llm-rollout-healthcheck
HEALTHCHECK --interval=30s --timeout=5s --start-period={start_period}s --retries=3 \
    CMD ["python3", "/usr/local/bin/llm-rollout-healthcheck"]

EXPOSE 8000
ENTRYPOINT {entrypoint_json}
