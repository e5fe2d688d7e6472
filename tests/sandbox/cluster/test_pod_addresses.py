"""Pod addresses: the kubelet never hands out an address something already listens on (a
process that outlived a crashed sandbox holding the same network, as CI once met: the new
pod died with "Address already in use" and crash-looped)."""

from __future__ import annotations

import errno
import socket

from tests.fixtures.cluster import Kube, deployment, wait_for


def test_an_address_taken_by_a_leftover_process_is_skipped(kube: Kube) -> None:
    taken = f"127.{kube.cluster.network}.10.1"  # the first pod address of this cluster
    with socket.socket() as leftover:
        try:
            leftover.bind((taken, 8000))
            leftover.listen()
        except OSError as error:  # a real leftover holds it already (CI met one): same test
            assert error.errno == errno.EADDRINUSE, error
        kube.apply("default", deployment("emu", replicas=1))

        def ready_pod() -> object:
            pods = kube.core.list_namespaced_pod("default").items
            return next(
                (
                    p
                    for p in pods
                    if any(
                        c.type == "Ready" and c.status == "True" for c in p.status.conditions or []
                    )
                ),
                None,
            )

        pod = wait_for(ready_pod, 60, "the pod to be ready")
    assert pod.status.pod_ip != taken  # type: ignore[attr-defined]
    assert pod.status.container_statuses[0].restart_count == 0  # type: ignore[attr-defined]
