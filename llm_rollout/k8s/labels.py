"""Names, labels and annotations of the objects llm-rollout manages for a model."""

from __future__ import annotations

from typing import Literal

from llm_rollout.spec import ReleaseSpec

Track = Literal["stable", "canary"]
FIELD_MANAGER = "llm-rollout"
PART_OF = "llm-rollout"
# The track of a release's Deployment (stable | canary | idle): on the Deployment only,
# never on its pods — a label in the pod template would replace every pod when it changes,
# and a promoted canary's pods must keep serving as stable. Metrics and pods are told
# apart by release instead.
TRACK = "llm-rollout.io/track"
RELEASE = "llm-rollout.io/release"
WEIGHTS_COMMIT = "llm-rollout.io/weights-commit"
IMAGE = "llm-rollout.io/image"
MODEL = "llm-rollout.io/model"
HTTP_PORT = 8000
HTTP_PORT_NAME = "http"
# A namespace or pod labelled `llm-rollout.io/client: "true"` may reach the models' pods
# (their NetworkPolicy); nothing else may, apart from Prometheus.
CLIENT = "llm-rollout.io/client"
CLIENT_VALUE = "true"
# The namespace Prometheus runs in (kube-prometheus-stack's default, and the one
# monitoring.artifacts.DEFAULT_PROMETHEUS points at); it may scrape the pods.
PROMETHEUS_NAMESPACE = "monitoring"
# The key, in the model's optional API key Secret, that vLLM reads as VLLM_API_KEY.
API_KEY_SECRET_KEY = "api-key"


def workload_name(spec: ReleaseSpec, release_id: str) -> str:
    """'<name>-<release id>': one Deployment per release, whichever track it serves on."""
    return f"{spec.name}-{release_id}"


def legacy_deployment_names(spec: ReleaseSpec) -> tuple[str, str]:
    """The two fixed Deployments earlier versions of llm-rollout used ('<name>', '<name>-canary'),
    adopted and removed by the first release after an upgrade."""
    return spec.name, f"{spec.name}-canary"


def claim_name(spec: ReleaseSpec) -> str:
    """The weights PVC: the spec's existing claim, or one llm-rollout creates."""
    return spec.storage.existing_claim or f"{spec.name}-weights"


def volume_name(spec: ReleaseSpec) -> str:
    """The cluster-scoped PV llm-rollout creates for an NFS export."""
    return f"{spec.namespace}-{spec.name}-weights"


def api_key_secret_name(spec: ReleaseSpec) -> str:
    """The optional Secret whose `api-key` vLLM requires of clients: '<name>-api-key'."""
    return f"{spec.name}-api-key"


def service_account_name(spec: ReleaseSpec) -> str:
    return "llm-rollout"


def common_labels(spec: ReleaseSpec) -> dict[str, str]:
    """Labels on every object of the model; the Service selects pods by these."""
    return {
        "app.kubernetes.io/name": spec.name,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "llm-rollout",
    }


def selector_labels(spec: ReleaseSpec, release_id: str) -> dict[str, str]:
    """What a release's Deployment selects: its model and release (two releases' pods never
    overlap, and a pod keeps its labels when its release is promoted)."""
    return {"app.kubernetes.io/name": spec.name, RELEASE: release_id}


def model_selector(spec: ReleaseSpec) -> str:
    """A label selector for every object of the model llm-rollout manages (all releases)."""
    return f"app.kubernetes.io/name={spec.name},app.kubernetes.io/part-of={PART_OF}"


def service_selector(spec: ReleaseSpec) -> dict[str, str]:
    """Stable and canary pods alike: the canary takes its share of real traffic."""
    return {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/part-of": PART_OF}
