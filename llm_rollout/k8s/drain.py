"""How a terminating vLLM pod drains, chosen by the Kubernetes version the manifests target.

A pod being deleted leaves the Service's endpoints while its containers get SIGTERM; the two
race. A preStop delay keeps vLLM serving until kube-proxies and load balancers have dropped
the pod. The native `sleep` preStop action (KEP-3960, PodLifecycleSleepAction) is alpha in
Kubernetes 1.29 (feature gate off: the API server drops the field and the pod is rejected for
a handler with no action), beta and on by default since 1.30, GA in 1.34
(https://www.kubernetes.dev/resources/keps/3960/, kubernetes/enhancements#3960). Below 1.30
the delay is an `exec` of the image's `sleep` binary, which the official vllm/vllm-openai
image (Ubuntu-based CUDA image) has.
"""

from __future__ import annotations

from typing import Any

from llm_rollout.k8s.validation import SUPPORTED_VERSIONS

# The oldest version we support: manifests rendered for it work on every supported cluster.
# The release spec has no field for the cluster's version yet (docs/kubernetes.md).
DEFAULT_TARGET_VERSION = SUPPORTED_VERSIONS[0]
# PodLifecycleSleepAction beta, enabled by default (KEP-3960 milestones).
SLEEP_ACTION_SINCE = (1, 30)


def version_tuple(version: str) -> tuple[int, int]:
    """(major, minor) of '1.29', '1.29.3' or 'v1.30.0-eks-…'."""
    major, minor = version.lstrip("v").split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def has_sleep_action(kubernetes_version: str) -> bool:
    """Whether the preStop `sleep` action is on by default in that Kubernetes release."""
    return version_tuple(kubernetes_version) >= SLEEP_ACTION_SINCE


def pre_stop(seconds: int, kubernetes_version: str = DEFAULT_TARGET_VERSION) -> dict[str, Any]:
    """A preStop handler that waits `seconds` before the container gets SIGTERM."""
    if has_sleep_action(kubernetes_version):
        return {"sleep": {"seconds": seconds}}
    return {"exec": {"command": ["sleep", str(seconds)]}}
