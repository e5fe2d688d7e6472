"""The Pod Security Standards: the security context our vLLM pods run with, the Namespace
labels that make the API server enforce it, and a checker of the `baseline` and
`restricted` rules on a rendered pod spec.

The rules are written from the Kubernetes documentation, "Pod Security Standards"
(https://kubernetes.io/docs/concepts/security/pod-security-standards/, the policy for
Kubernetes 1.29-1.33), control by control; each check names the control it implements.
Pod Security Admission (https://kubernetes.io/docs/concepts/security/pod-security-admission/)
applies the same controls to a namespace by its `pod-security.kubernetes.io/*` labels.

`restricted` also needs a non-root user, which the official `vllm/vllm-openai` image does not
run as: its Dockerfile (github.com/vllm-project/vllm, docker/Dockerfile, target `vllm-openai`)
sets no `USER`, so the server runs as root and keeps its caches under /root/.cache. So we meet
`baseline` fully and `restricted` in everything but `runAsNonRoot`/`runAsUser`
(docs/kubernetes.md says what running it non-root would take).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["baseline", "restricted"]

# Enforce what the pods meet everywhere; warn and audit against what they nearly meet, so a
# cluster admin sees the one remaining `restricted` gap (running as root) without a rejection.
ENFORCE: Level = "baseline"
WARN_AND_AUDIT: Level = "restricted"
LABEL_PREFIX = "pod-security.kubernetes.io"

# The PSS "Capabilities" control of baseline: only these may be added.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
# "Sysctls" (baseline): the safe set, as of Kubernetes 1.29-1.33.
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
# "SELinux" (baseline): allowed types (container_engine_t since 1.31; allowing it is harmless).
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
# "Volume Types" (restricted): the only volume sources allowed.
RESTRICTED_VOLUME_SOURCES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def namespace_labels() -> dict[str, str]:
    """Pod Security Admission labels: enforce baseline, warn and audit restricted."""
    return {
        f"{LABEL_PREFIX}/enforce": ENFORCE,
        f"{LABEL_PREFIX}/warn": WARN_AND_AUDIT,
        f"{LABEL_PREFIX}/audit": WARN_AND_AUDIT,
    }


def pod_security_context() -> dict[str, Any]:
    """The pod-level context: the runtime's default seccomp profile for every container."""
    return {"seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context() -> dict[str, Any]:
    """The vLLM container's context: no privilege escalation and no Linux capabilities.

    vLLM needs none: it listens on an unprivileged port, and GPUs reach the container as
    device nodes the device plugin and the runtime grant, not through capabilities."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }


@dataclass(frozen=True)
class Violation:
    """One PSS control a pod spec breaks, at which field."""

    level: Level
    control: str
    field: str
    detail: str

    def __str__(self) -> str:
        return f"{self.level} / {self.control}: {self.field} {self.detail}"


def violations(
    pod_spec: dict[str, Any], level: Level, annotations: dict[str, str] | None = None
) -> list[Violation]:
    """Every control of `level` (restricted includes baseline) that `pod_spec` breaks."""
    found = _baseline(pod_spec, annotations or {})
    if level == "restricted":
        found += _restricted(pod_spec)
    return found


def _containers(pod: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"spec.{kind}[{i}]", container)
        for kind in ("containers", "initContainers", "ephemeralContainers")
        for i, container in enumerate(pod.get(kind) or [])
    ]


def _baseline(pod: dict[str, Any], annotations: dict[str, str]) -> list[Violation]:
    found: list[Violation] = []

    def bad(control: str, field: str, detail: str) -> None:
        found.append(Violation("baseline", control, field, detail))

    pod_context = pod.get("securityContext") or {}
    if (pod_context.get("windowsOptions") or {}).get("hostProcess"):
        bad("HostProcess", "spec.securityContext.windowsOptions.hostProcess", "must not be true")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            bad("Host Namespaces", f"spec.{flag}", "must not be true")
    for volume in pod.get("volumes") or []:
        if "hostPath" in volume:
            bad("HostPath Volumes", f"spec.volumes[{volume.get('name')}].hostPath", "forbidden")
    _check_profiles(pod_context, "spec.securityContext", bad)
    for name in (s.get("name", "") for s in pod_context.get("sysctls") or []):
        if name not in SAFE_SYSCTLS:
            bad("Sysctls", "spec.securityContext.sysctls", f"{name!r} is not a safe sysctl")
    for key, value in annotations.items():
        if key.startswith(APPARMOR_ANNOTATION) and not (
            value == "runtime/default" or value.startswith("localhost/")
        ):
            bad("AppArmor", f"metadata.annotations[{key}]", f"{value!r} is not allowed")
    for path, container in _containers(pod):
        context = container.get("securityContext") or {}
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            bad("HostProcess", f"{path}.securityContext.windowsOptions.hostProcess", "true")
        if context.get("privileged"):
            bad("Privileged Containers", f"{path}.securityContext.privileged", "must not be true")
        added = set((context.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            bad(
                "Capabilities",
                f"{path}.securityContext.capabilities.add",
                f"adds {sorted(added - BASELINE_CAPABILITIES)}",
            )
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                bad("Host Ports", f"{path}.ports", f"hostPort {port['hostPort']}")
        _check_profiles(context, f"{path}.securityContext", bad)
        if context.get("procMount", "Default") != "Default":
            bad("/proc Mount Type", f"{path}.securityContext.procMount", "must be Default")
    return found


def _check_profiles(context: dict[str, Any], path: str, bad: Any) -> None:
    """AppArmor, SELinux and seccomp, which a pod and each container may set."""
    apparmor = (context.get("appArmorProfile") or {}).get("type")
    if apparmor not in (None, "RuntimeDefault", "Localhost"):
        bad("AppArmor", f"{path}.appArmorProfile.type", f"{apparmor!r} is not allowed")
    selinux = context.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES:
        bad("SELinux", f"{path}.seLinuxOptions.type", f"{selinux['type']!r} is not allowed")
    for field in ("user", "role"):
        if selinux.get(field):
            bad("SELinux", f"{path}.seLinuxOptions.{field}", "must be unset")
    if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
        bad("Seccomp", f"{path}.seccompProfile.type", "must not be Unconfined")


def _restricted(pod: dict[str, Any]) -> list[Violation]:
    found: list[Violation] = []

    def bad(control: str, field: str, detail: str) -> None:
        found.append(Violation("restricted", control, field, detail))

    for volume in pod.get("volumes") or []:
        sources = set(volume) - {"name"}
        if not sources <= RESTRICTED_VOLUME_SOURCES:
            bad("Volume Types", f"spec.volumes[{volume.get('name')}]", f"uses {sorted(sources)}")
    pod_context = pod.get("securityContext") or {}
    if pod_context.get("runAsUser") == 0:
        bad("Running as Non-root user", "spec.securityContext.runAsUser", "must not be 0")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    for path, container in _containers(pod):
        context = container.get("securityContext") or {}
        if context.get("allowPrivilegeEscalation") is not False:
            bad(
                "Privilege Escalation",
                f"{path}.securityContext.allowPrivilegeEscalation",
                "must be false",
            )
        # runAsNonRoot: true on the container, or on the pod and not false on the container
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if non_root is not True:
            bad("Running as Non-root", f"{path}.securityContext.runAsNonRoot", "must be true")
        if context.get("runAsUser") == 0:
            bad("Running as Non-root user", f"{path}.securityContext.runAsUser", "must not be 0")
        seccomp = (context.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad(
                "Seccomp",
                f"{path}.securityContext.seccompProfile.type",
                "must be RuntimeDefault or Localhost (on the container or the pod)",
            )
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            bad("Capabilities", f"{path}.securityContext.capabilities.drop", "must include ALL")
        added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            bad("Capabilities", f"{path}.securityContext.capabilities.add", f"adds {added}")
    return found
