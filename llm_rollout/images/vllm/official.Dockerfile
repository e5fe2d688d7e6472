# syntax=docker/dockerfile:1
# llm-rollout serving image: the official vLLM image plus a healthcheck and OCI labels.
# Rendered by llm-rollout for {name}; edit the template in images/vllm/, not this file.
FROM vllm/vllm-openai:v{vllm_version}

LABEL org.opencontainers.image.title="{name}-vllm" \
      org.opencontainers.image.description="vLLM {vllm_version} serving {source_repo}" \
      org.opencontainers.image.source="{image_source}" \
      org.opencontainers.image.revision="{source_revision}" \
      org.opencontainers.image.version="{vllm_version}" \
      org.opencontainers.image.vendor="llm-rollout" \
      io.llm-rollout.vllm-version="{vllm_version}" \
      io.llm-rollout.model-repo="{source_repo}"

COPY healthcheck.py /usr/local/bin/llm-rollout-healthcheck

# Model load takes minutes: a long start period, like the Deployment's startupProbe.
HEALTHCHECK --interval=30s --timeout=5s --start-period={start_period}s --retries=3 \
    CMD ["python3", "/usr/local/bin/llm-rollout-healthcheck"]

# The image's own entrypoint stays ({entrypoint}); the Deployment passes its arguments.
