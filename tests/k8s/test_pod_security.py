"""The vLLM pods against the Pod Security Standards (kubernetes.io/docs/concepts/security/
pod-security-standards/): all of baseline, and all of restricted but running as non-root."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llm_rollout.k8s import manifests, pod_security
from llm_rollout.k8s.pod_security import violations
from llm_rollout.k8s.release import Release, default_image
from llm_rollout.spec import load_spec
from tests.conftest import SPEC_FILES

SPECS = {name: load_spec(SPEC_FILES[name]) for name in ("deepseek-v4", "demo-tiny")}


def pod_of(name: str) -> dict[str, Any]:
    spec = SPECS[name]
    release = Release(spec, "a" * 40, default_image(spec))
    return manifests.deployment(release, 1)["spec"]["template"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", SPECS)
def test_the_rendered_pods_meet_baseline(name: str) -> None:
    template = pod_of(name)
    assert violations(template["spec"], "baseline", template["metadata"]["annotations"]) == []


@pytest.mark.parametrize("name", SPECS)
def test_restricted_is_missed_only_by_running_as_root(name: str) -> None:
    found = violations(pod_of(name)["spec"], "restricted")
    assert {v.control for v in found} == {"Running as Non-root"}, [str(v) for v in found]
    container = pod_of(name)["spec"]["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod_of(name)["spec"]["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}


def test_a_non_root_pod_would_meet_restricted() -> None:
    pod = pod_of("demo-tiny")["spec"]
    pod["securityContext"]["runAsNonRoot"] = True
    assert violations(pod, "restricted") == []


def broken(change: str) -> dict[str, Any]:
    """A copy of the rendered pod with one control broken."""
    pod = copy.deepcopy(pod_of("demo-tiny")["spec"])
    pod["securityContext"]["runAsNonRoot"] = True
    container = pod["containers"][0]
    context = container["securityContext"]
    if change == "hostNetwork":
        pod["hostNetwork"] = True
    elif change == "privileged":
        context["privileged"] = True
    elif change == "SYS_ADMIN":
        context["capabilities"]["add"] = ["SYS_ADMIN"]
    elif change == "hostPath":
        pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    elif change == "hostPort":
        container["ports"][0]["hostPort"] = 8000
    elif change == "unconfined":
        context["seccompProfile"] = {"type": "Unconfined"}
    elif change == "sysctl":
        pod["securityContext"]["sysctls"] = [{"name": "kernel.msgmax", "value": "1"}]
    elif change == "selinux":
        context["seLinuxOptions"] = {"type": "spc_t"}
    elif change == "procMount":
        context["procMount"] = "Unmasked"
    elif change == "escalation":
        del context["allowPrivilegeEscalation"]
    elif change == "keeps capabilities":
        del context["capabilities"]
    elif change == "no seccomp":
        del pod["securityContext"]["seccompProfile"]
    elif change == "root user":
        context["runAsUser"] = 0
    elif change == "nfs volume":
        pod["volumes"].append({"name": "n", "nfs": {"server": "s", "path": "/"}})
    return pod


@pytest.mark.parametrize(
    ("change", "level", "control"),
    [
        ("hostNetwork", "baseline", "Host Namespaces"),
        ("privileged", "baseline", "Privileged Containers"),
        ("SYS_ADMIN", "baseline", "Capabilities"),
        ("hostPath", "baseline", "HostPath Volumes"),
        ("hostPort", "baseline", "Host Ports"),
        ("unconfined", "baseline", "Seccomp"),
        ("sysctl", "baseline", "Sysctls"),
        ("selinux", "baseline", "SELinux"),
        ("procMount", "baseline", "/proc Mount Type"),
        ("escalation", "restricted", "Privilege Escalation"),
        ("keeps capabilities", "restricted", "Capabilities"),
        ("no seccomp", "restricted", "Seccomp"),
        ("root user", "restricted", "Running as Non-root user"),
        ("nfs volume", "restricted", "Volume Types"),
    ],
)
def test_the_checker_catches_each_control(change: str, level: str, control: str) -> None:
    found = violations(broken(change), level)  # type: ignore[arg-type]
    assert [(v.level, v.control) for v in found] == [(level, control)], [str(v) for v in found]
    if level == "restricted":  # allowed by baseline
        assert violations(broken(change), "baseline") == []
    else:  # and restricted, which includes baseline, rejects it too
        assert (level, control) in {
            (v.level, v.control) for v in violations(broken(change), "restricted")
        }


def test_the_namespace_enforces_baseline_and_warns_on_restricted() -> None:
    labels = manifests.namespace(SPECS["demo-tiny"])["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"
    assert labels["app.kubernetes.io/part-of"] == "llm-rollout"
    assert pod_security.namespace_labels().items() <= labels.items()
