"""Kubernetes objects of a model's router (docs/router.md), for specs with a `routing:` part.

  <model>-<release id>  a Service per release, selecting that release's pods only, so the
                        router can give each release an exact share (one Service over every
                        pod gives each release its replica ratio, per connection)
  <model>-router        the router's ConfigMap (router.yaml, written by the release
                        controller), Deployment, Service and PodDisruptionBudget

The router's pods meet the `restricted` Pod Security Standard in full (they run as the
non-root user of the llm-rollout image), and carry the client label the model's
NetworkPolicy admits. Their labels never match the model's own selectors (k8s.labels
`model_selector`, `service_selector`): the release lifecycle scales every Deployment of the
model, and the model's Service and PDB select every pod of it.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import yaml

from llm_rollout.k8s import labels as names
from llm_rollout.k8s import pod_security
from llm_rollout.k8s.labels import HTTP_PORT, HTTP_PORT_NAME
from llm_rollout.router.config import Release as RoutedRelease
from llm_rollout.router.config import RouterConfig, api_key_env_vars, config_for
from llm_rollout.spec import ReleaseSpec

Manifest = dict[str, Any]

ROUTER_PORT = 8080
CONFIG_KEY = "router.yaml"
CONFIG_DIR = "/etc/llm-rollout"
CONFIG_PATH = PurePosixPath(CONFIG_DIR) / CONFIG_KEY  # inside the router's pods
COMPONENT = "router"
# The user of deploy/user-code.Dockerfile (any image with llm-rollout installed may run the
# router; one with another non-root user sets it in its own USER, which runAsNonRoot allows).
ROUTER_USER = 10001
# Enough for the router's Python process and its pool of upstream connections (bench/router.py
# measured one core for ~800 requests/s); limits leave room for bursts of streams.
ROUTER_RESOURCES = {
    "requests": {"cpu": "500m", "memory": "256Mi"},
    "limits": {"cpu": "2", "memory": "1Gi"},
}
# The HPA's target: mean CPU use of the router's pods against their request. A Python event
# loop answers slower well before a core is saturated; leave headroom for bursts.
ROUTER_CPU_UTILIZATION = 70
# The router stops taking connections, then finishes open streams within
# router.server.SHUTDOWN_TIMEOUT_SECONDS (20 s); the pod's grace period must cover both.
ROUTER_GRACE_SECONDS = 30


class RouterImageMissing(ValueError):
    """A spec with `routing:` but no `routing.image` (the spec's rules refuse it at load;
    this guards specs built in code)."""


def router_name(spec: ReleaseSpec) -> str:
    """'<model>-router': the router's ConfigMap, Deployment, Service and PDB."""
    return f"{spec.name}-router"


def router_labels(spec: ReleaseSpec) -> dict[str, str]:
    """Labels of the router's objects and pods: its own name, so the model's selectors
    (every release's pods, every release's Deployment) never take them in."""
    return {
        "app.kubernetes.io/name": router_name(spec),
        "app.kubernetes.io/part-of": names.PART_OF,
        "app.kubernetes.io/managed-by": "llm-rollout",
        "app.kubernetes.io/component": COMPONENT,
    }


def router_selector(spec: ReleaseSpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": router_name(spec), "app.kubernetes.io/component": COMPONENT}


def release_service_name(spec: ReleaseSpec, release_id: str) -> str:
    """'<model>-<release id>', the name of the release's Deployment too."""
    return names.workload_name(spec, release_id)


def release_service(spec: ReleaseSpec, release_id: str) -> Manifest:
    """The Service of one release's pods (model + release label, as its Deployment selects)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": release_service_name(spec, release_id),
            "namespace": spec.namespace,
            "labels": {**names.common_labels(spec), names.RELEASE: release_id},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": names.selector_labels(spec, release_id),
            "ports": [
                {
                    "name": HTTP_PORT_NAME,
                    "port": HTTP_PORT,
                    "targetPort": HTTP_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def release_url(spec: ReleaseSpec, release_id: str, cluster_ip: str | None = None) -> str:
    """The router's URL of a release: its Service's cluster IP when known (what the release
    controller writes: no DNS lookup between the router and a release, and it works where no
    cluster DNS exists), else the Service's DNS name (rendered output)."""
    if cluster_ip and cluster_ip != "None":
        host = f"[{cluster_ip}]" if ":" in cluster_ip else cluster_ip
    else:
        host = f"{release_service_name(spec, release_id)}.{spec.namespace}.svc"
    return f"http://{host}:{HTTP_PORT}"


def stable_config(spec: ReleaseSpec, release_id: str) -> RouterConfig:
    """The router's config with one release serving everything (what `render` writes; the
    release controller rewrites it at every transition)."""
    return config_for(
        spec, [RoutedRelease(id=release_id, url=release_url(spec, release_id), weight=100)]
    )


def config_text(config: RouterConfig) -> str:
    """The document as the router reads it (YAML, keys in the model's order: stable text,
    so an unchanged config is an unchanged ConfigMap)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def router_config_map(spec: ReleaseSpec, config: RouterConfig) -> Manifest:
    """ConfigMap '<model>-router' holding router.yaml, mounted into the router's pods."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": router_name(spec),
            "namespace": spec.namespace,
            "labels": router_labels(spec),
        },
        "data": {CONFIG_KEY: config_text(config)},
    }


def router_deployment(spec: ReleaseSpec) -> Manifest:
    """The router's Deployment: `llm-rollout router serve` on the mounted config.

    The config is a whole ConfigMap volume, never a subPath mount: the kubelet swaps a
    volume's files when the ConfigMap changes (a subPath file never changes), and the router
    re-reads its file when the content changes. So no checksum annotation either: weights
    change at every step of a release and must not restart the router's pods."""
    routing = spec.routing
    if routing is None or routing.image is None:
        raise RouterImageMissing(
            f"{spec.name}: routing.image is needed to run the router (an image with "
            "llm-rollout installed, e.g. the Dagster user-code image)"
        )
    health = {"httpGet": {"path": "/health", "port": HTTP_PORT_NAME}}
    container = {
        "name": "router",
        "image": routing.image,
        "imagePullPolicy": "IfNotPresent",
        "command": [
            "llm-rollout",
            "router",
            "serve",
            str(CONFIG_PATH),
            "--host",
            "0.0.0.0",
            "--port",
            str(ROUTER_PORT),
        ],
        "ports": [{"name": HTTP_PORT_NAME, "containerPort": ROUTER_PORT, "protocol": "TCP"}],
        "env": api_key_env_vars(routing),
        "resources": {k: dict(v) for k, v in ROUTER_RESOURCES.items()},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
        "readinessProbe": {
            **health,
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            **health,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "securityContext": {
            **pod_security.container_security_context(),
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
        },
    }
    pod_labels = {**router_labels(spec), names.CLIENT: names.CLIENT_VALUE}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": router_name(spec),
            "namespace": spec.namespace,
            "labels": router_labels(spec),
        },
        "spec": {
            # with an HPA the replicas are its to set: applying a number at every release
            # would take them back (the HPA starts from `replicas` as its minimum)
            **({} if routing.max_replicas else {"replicas": routing.replicas}),
            "selector": {"matchLabels": router_selector(spec)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "revisionHistoryLimit": 5,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "automountServiceAccountToken": False,  # the router never calls the API
                    "enableServiceLinks": False,
                    "securityContext": {
                        **pod_security.pod_security_context(),
                        "runAsNonRoot": True,
                        "runAsUser": ROUTER_USER,
                        "runAsGroup": ROUTER_USER,
                    },
                    "terminationGracePeriodSeconds": ROUTER_GRACE_SECONDS,
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": router_name(spec)}}],
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": router_selector(spec)},
                        }
                    ],
                },
            },
        },
    }


def router_service(spec: ReleaseSpec) -> Manifest:
    """'<model>-router': where clients send the model's requests."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": router_name(spec),
            "namespace": spec.namespace,
            "labels": router_labels(spec),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": router_selector(spec),
            "ports": [
                {
                    "name": HTTP_PORT_NAME,
                    "port": ROUTER_PORT,
                    "targetPort": HTTP_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def router_disruption_budget(spec: ReleaseSpec) -> Manifest:
    """One router pod at a time may be drained."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": router_name(spec),
            "namespace": spec.namespace,
            "labels": router_labels(spec),
        },
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": router_selector(spec)}},
    }


def router_autoscaler(spec: ReleaseSpec) -> Manifest | None:
    """An autoscaling/v2 HPA on the router pods' CPU (a resource metric: metrics-server, no
    adapter), from `routing.replicas` to `routing.max_replicas`; None without a maximum."""
    routing = spec.routing
    if routing is None or routing.max_replicas is None:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": router_name(spec),
            "namespace": spec.namespace,
            "labels": router_labels(spec),
        },
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": router_name(spec),
            },
            "minReplicas": routing.replicas,
            "maxReplicas": routing.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": ROUTER_CPU_UTILIZATION,
                        },
                    },
                }
            ],
        },
    }


def router_objects(spec: ReleaseSpec) -> list[Manifest]:
    """The router's Deployment, Service, PDB and (with `routing.max_replicas`) HPA — not its
    ConfigMap, which the release controller owns; nothing for a spec without `routing:`."""
    if spec.routing is None:
        return []
    hpa = router_autoscaler(spec)
    return [
        router_deployment(spec),
        router_service(spec),
        router_disruption_budget(spec),
        *([hpa] if hpa else []),
    ]
