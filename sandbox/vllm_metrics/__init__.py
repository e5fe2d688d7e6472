"""A stand-in for a vLLM pod's /metrics, with scripted behaviour, for fast gate tests."""

from sandbox.vllm_metrics.behaviour import SCENARIOS, Behaviour
from sandbox.vllm_metrics.server import MetricsEmulator

__all__ = ["SCENARIOS", "Behaviour", "MetricsEmulator"]
