"""The OpenAPI documents the sandbox serves, generated from kubernetes-validate's schemas (the
ones our manifests are validated against) in the form the API server publishes them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from sandbox.cluster import openapi, resources
from tests.fixtures.cluster import Kube


def get(kube: Kube, path: str, accept: str = "application/json") -> Any:
    request = urllib.request.Request(
        kube.cluster.url + path, headers={"Authorization": "Bearer sandbox", "Accept": accept}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_v3_discovery_and_a_group_version_document(kube: Kube) -> None:
    discovery = get(kube, "/openapi/v3")["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/batch/v1", "apis/policy/v1"} <= set(discovery)
    apps = get(kube, discovery["apis/apps/v1"]["serverRelativeURL"])
    assert apps["openapi"].startswith("3.")
    deployment = apps["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    assert deployment["properties"]["spec"]["$ref"] == (
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    )
    replicas = apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
    assert replicas["replicas"]["type"] == "integer"  # one type, not JSON Schema's [.., "null"]
    patch = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}


def test_v2_document_in_json(kube: Kube) -> None:
    document = get(kube, "/openapi/v2")
    assert document["swagger"] == "2.0"
    definitions = document["definitions"]
    assert definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] == {
        "type": "string",
        "format": "int-or-string",
    }
    spec = definitions["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
    assert spec["template"]["$ref"] == "#/definitions/io.k8s.api.core.v1.PodTemplateSpec"
    for resource in resources.RESOURCES:  # every served kind has its schema
        assert openapi.definition_name(resource) in definitions, resource.kind
    protobuf = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
    try:
        get(kube, "/openapi/v2", accept=protobuf)
        raise AssertionError("the protobuf form was served")
    except urllib.error.HTTPError as error:
        assert error.code == 406


def test_unknown_fields_are_found_at_any_depth() -> None:
    deployments = resources.find("apps", "v1", "deployments")
    assert deployments is not None
    obj = {
        "metadata": {"name": "d", "managedFields": [{"fieldsV1": {"f:spec": {}}}]},
        "spec": {
            "replica": 1,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "a", "imagePullPolice": "x", "resources": {"limits": {"cpu": 1}}}
                    ]
                }
            },
        },
    }
    assert openapi.unknown_fields(deployments, obj) == [
        ".spec.replica",
        ".spec.template.spec.containers[0].imagePullPolice",
    ]
