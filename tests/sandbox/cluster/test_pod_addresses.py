"""Pod addresses: the kubelet never hands out an address something already listens on (a
process that outlived a crashed sandbox holding the same network, as CI once met: the new
pod died with "Address already in use" and crash-looped)."""

from __future__ import annotations

import errno
import socket
import time

from tests.fixtures.cluster import Kube, deployment, wait_for

HELD_ELSEWHERE_SECONDS = 30


def hold(leftover: socket.socket, address: str, port: int) -> None:
    """Listen on the address as a leftover would. A real one may hold it already (CI met
    one): often a pod of the sandbox that had this network a moment ago, still exiting, which
    would free it between here and the kubelet's look (a false failure under load) — so wait
    for it to go and hold the address ourselves; one that stays is the same test."""
    deadline = time.monotonic() + HELD_ELSEWHERE_SECONDS
    while True:
        try:
            leftover.bind((address, port))
            leftover.listen()
            return
        except OSError as error:
            assert error.errno == errno.EADDRINUSE, error
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)


def test_an_address_taken_by_a_leftover_process_is_skipped(kube: Kube) -> None:
    taken = f"127.{kube.cluster.network}.10.1"  # the first pod address of this cluster
    with socket.socket() as leftover:
        hold(leftover, taken, 8000)
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
