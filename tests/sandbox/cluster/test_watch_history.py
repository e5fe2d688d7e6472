"""Watch and list history: a too-old resourceVersion is 410 Expired as the API server's watch
cache answers it (staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go,
`getAllEventsSinceLocked`; cacher.go `Watch` sends it as one ERROR event on a 200 stream), and
fresh versions keep working for the `kubernetes` client and kubectl."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client, watch

from sandbox.cluster import store as store_module
from sandbox.cluster.store import ApiError, ObjectStore
from tests.fixtures.cluster import Kube
from tests.sandbox.cluster.test_kubectl import KUBECTL


def raw_get(kube: Kube, path: str) -> tuple[int, list[dict[str, Any]]]:
    """GET `path` as the admin: the status and the body's JSON lines (one per watch event)."""
    request = urllib.request.Request(
        kube.cluster.url + path, headers={"Authorization": "Bearer sandbox"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    return status, [json.loads(line) for line in text.splitlines() if line.strip()]


def line_reader(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's stdout lines, read by a thread, so that a test can wait with a deadline."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    return lines


def list_version(kube: Kube, namespace: str) -> str:
    return str(kube.core.list_namespaced_config_map(namespace).metadata.resource_version)


def test_watch_from_a_compacted_version_gets_one_410_expired_error_event(kube: Kube) -> None:
    namespace = kube.namespace("expired")
    old = list_version(kube, namespace)
    kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "a"}})
    kube.cluster.store.compact()  # as etcd compaction and a watch-cache relist would
    status, events = raw_get(
        kube,
        f"/api/v1/namespaces/{namespace}/configmaps?watch=true&resourceVersion={old}"
        "&timeoutSeconds=5",
    )
    assert status == 200  # the error comes as an event, not as the HTTP status
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    error = events[0]["object"]
    assert error["kind"] == "Status"
    assert (error["code"], error["reason"], error["status"]) == (410, "Expired", "Failure")
    current = kube.cluster.store.revision
    assert error["message"] == f"too old resource version: {old} ({current})"

    with pytest.raises(client.ApiException) as gone:  # the client raises it, as for a cluster
        for _ in watch.Watch().stream(
            kube.core.list_namespaced_config_map,
            namespace,
            resource_version=old,
            timeout_seconds=5,
        ):
            pass
    assert gone.value.status == 410
    assert "Expired: too old resource version" in str(gone.value.reason)


def test_a_fresh_version_still_streams_to_the_client_and_kubectl(kube: Kube) -> None:
    namespace = kube.namespace("fresh")
    kube.cluster.store.compact()
    fresh = list_version(kube, namespace)
    # a change after `fresh`, made before the watch starts: resuming from `fresh` delivers it
    kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "after"}})
    seen: list[str] = []
    stream = watch.Watch()
    for event in stream.stream(
        kube.core.list_namespaced_config_map, namespace, resource_version=fresh, timeout_seconds=10
    ):
        seen.append(event["object"].metadata.name)
        stream.stop()
    assert seen == ["after"]

    # kubectl's watch (the watch-list protocol: sendInitialEvents, then new events)
    watcher = subprocess.Popen(
        [str(KUBECTL), "get", "configmaps", "-n", namespace, "--watch", "-o", "name"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KUBECONFIG": str(kube.cluster.kubeconfig)},
    )
    try:
        lines = line_reader(watcher)
        assert lines.get(timeout=30) == "configmap/after"  # the initial state
        kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "later"}})
        assert lines.get(timeout=30) == "configmap/later"
    finally:
        watcher.kill()
        watcher.communicate(timeout=10)


def test_history_is_kept_for_its_window_then_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "HISTORY_SECONDS", 0.0)
    monkeypatch.setattr(store_module, "HISTORY_MIN_EVENTS", 3)
    store = ObjectStore()
    configmaps = store.resource("configmaps")
    first = store.revision
    for name in "abcdef":
        store.create(configmaps, "default", {"metadata": {"name": name}})

    def watch_from(version: int) -> list[str]:
        events = store.watch(configmaps, "default", version, None, None, 0.3, threading.Event())
        return [event.obj["metadata"]["name"] for event in events]

    with pytest.raises(ApiError) as gone:
        watch_from(first)
    assert (gone.value.code, gone.value.reason) == (410, "Expired")
    assert watch_from(store.revision - 3) == ["d", "e", "f"]  # the newest 3 are kept


def test_list_resource_version_match(kube: Kube, monkeypatch: pytest.MonkeyPatch) -> None:
    namespace = kube.namespace("rvmatch")
    old = list_version(kube, namespace)
    kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "a"}})
    path = f"/api/v1/namespaces/{namespace}/configmaps"

    status, [body] = raw_get(kube, f"{path}?resourceVersion={old}&resourceVersionMatch=Exact")
    assert (status, body["reason"]) == (410, "Expired")
    assert body["message"] == "The resourceVersion for the provided list is too old."

    status, [body] = raw_get(
        kube, f"{path}?resourceVersion={old}&resourceVersionMatch=NotOlderThan"
    )
    assert status == 200
    assert [item["metadata"]["name"] for item in body["items"]] == ["a"]

    monkeypatch.setattr(store_module, "TOO_LARGE_WAIT_SECONDS", 0.2)
    future = kube.cluster.store.revision + 1000
    status, [body] = raw_get(
        kube, f"{path}?resourceVersion={future}&resourceVersionMatch=NotOlderThan"
    )
    assert (status, body["reason"]) == (504, "Timeout")
    assert body["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"

    status, [body] = raw_get(kube, f"{path}?resourceVersionMatch=Exact")
    assert (status, body["reason"]) == (400, "BadRequest")


def test_a_quiet_watch_gets_bookmarks_when_it_asks(
    kube: Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "BOOKMARK_SECONDS", 0.2)
    namespace = kube.namespace("bookmarks")
    fresh = list_version(kube, namespace)
    started = time.monotonic()
    stream = watch.Watch()
    kinds = []
    for event in stream.stream(
        kube.core.list_namespaced_config_map,
        namespace,
        resource_version=fresh,
        allow_watch_bookmarks=True,
        timeout_seconds=5,
    ):
        kinds.append(event["type"])
        stream.stop()
    assert kinds == ["BOOKMARK"]
    assert time.monotonic() - started < 5
