"""The cluster a command talks to, from a kubeconfig, or one error line saying how to give one."""

from __future__ import annotations

from pathlib import Path

from kubernetes.config import ConfigException

from llm_rollout.cli.errors import fail
from llm_rollout.k8s.cluster import ClusterClient


def cluster_or_exit(kubeconfig: Path | None) -> ClusterClient:
    """A client from `kubeconfig` ($KUBECONFIG, in-cluster credentials or ~/.kube/config
    when None); without usable credentials, exit with what to set."""
    try:
        return ClusterClient.from_kubeconfig(str(kubeconfig) if kubeconfig else None)
    except ConfigException as error:
        fail(
            f"no usable Kubernetes credentials ({error}); set KUBECONFIG or pass --kubeconfig, "
            "or run inside a cluster"
        )
