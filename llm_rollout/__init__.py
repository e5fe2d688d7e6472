"""llm-rollout: the release pipeline for open-weight LLMs on Kubernetes with vLLM.

spec (the release spec); weights, images, k8s, monitoring (domain, no Dagster); rollout (the
release controller); router; assets and pipelines (Dagster); cli (the command)."""
