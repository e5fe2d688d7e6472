"""Defaults the API server fills in, as Kubernetes does, so clients read complete objects."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
PROBE_DEFAULTS = {
    "timeoutSeconds": 1,
    "periodSeconds": 10,
    "successThreshold": 1,
    "failureThreshold": 3,
}


def apply_defaults(kind: str, obj: Obj) -> None:
    """Fill in defaulted fields of a Deployment, ReplicaSet or Pod (in place)."""
    spec = obj.setdefault("spec", {})
    if kind == "Deployment":
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxSurge", "25%")
            rolling.setdefault("maxUnavailable", "25%")
        _pod_spec(spec.get("template", {}).setdefault("spec", {}))
    elif kind == "ReplicaSet":
        _pod_spec(spec.get("template", {}).setdefault("spec", {}))
    elif kind == "Pod":
        _pod_spec(spec)


def _pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    for container in spec.get("containers") or []:
        container.setdefault("imagePullPolicy", "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe in container:
                for key, value in PROBE_DEFAULTS.items():
                    container[probe].setdefault(key, value)
                if "httpGet" in container[probe]:
                    container[probe]["httpGet"].setdefault("scheme", "HTTP")
