"""Monitoring: vLLM metric catalogue, Prometheus rules and the promotion gate."""
