"""Server-side Table printing (kubernetes/pkg/printers/internalversion/printers.go): the body
the API server returns for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`."""

from __future__ import annotations

import json
import urllib.request
from datetime import timedelta
from typing import Any

import pytest

from sandbox.cluster import tables
from sandbox.cluster.objects import iso, now
from sandbox.cluster.resources import find
from tests.fixtures.cluster import Kube

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def get(kube: Kube, path: str, accept: str = TABLE) -> dict[str, Any]:
    request = urllib.request.Request(
        kube.cluster.url + path, headers={"Authorization": "Bearer sandbox", "Accept": accept}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def test_a_list_as_table_has_column_definitions_cells_and_metadata(kube: Kube) -> None:
    namespace = kube.namespace("tables")
    kube.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "c", "labels": {"x": "y"}}, "data": {"k": "v"}}
    )
    body = get(kube, f"/api/v1/namespaces/{namespace}/configmaps")
    assert (body["kind"], body["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert body["columnDefinitions"][0]["format"] == "name"
    [row] = body["rows"]
    assert row["cells"][:2] == ["c", 1]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["labels"] == {"x": "y"}
    one = get(kube, f"/api/v1/namespaces/{namespace}/configmaps/c?includeObject=None")
    assert one["kind"] == "Table" and "object" not in one["rows"][0]
    plain = get(kube, f"/api/v1/namespaces/{namespace}/configmaps", accept="application/json")
    assert plain["kind"] == "ConfigMapList"
    other = get(kube, "/apis/rbac.authorization.k8s.io/v1/clusterroles")  # the default table
    assert [c["name"] for c in other["columnDefinitions"]] == ["Name", "Created At"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (3600, "60m"),
        (4 * 3600, "4h"),
        (3 * 86400, "3d"),
        (3 * 86400 + 3600, "3d1h"),
        (30 * 86400, "30d"),
    ],
)
def test_age_is_printed_like_kubectl(seconds: int, text: str) -> None:
    assert tables.human_duration(seconds) == text


def pod(**status: Any) -> dict[str, Any]:
    created = iso(now() - timedelta(minutes=3))
    return {
        "metadata": {"name": "p", "creationTimestamp": created},
        "spec": {"containers": [{"name": "vllm"}], "nodeName": "n"},
        "status": {"phase": "Running", **status},
    }


def test_pod_status_is_the_containers_reason() -> None:
    pods = find("", "v1", "pods")
    assert pods is not None
    crashing = pod(
        containerStatuses=[
            {
                "name": "vllm",
                "ready": False,
                "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": iso(now())}},
            }
        ]
    )
    [row] = tables.table(pods, [crashing], "1")["rows"]
    assert row["cells"][:5] == ["p", "0/1", "CrashLoopBackOff", "3 (0s ago)", "3m"]
    leaving = pod(containerStatuses=[{"name": "vllm", "ready": True, "state": {"running": {}}}])
    leaving["metadata"]["deletionTimestamp"] = iso(now())
    [row] = tables.table(pods, [leaving], "1")["rows"]
    assert row["cells"][1:3] == ["1/1", "Terminating"]
