"""Bearer-token authentication and RBAC authorization of the sandbox API, through the real
`kubernetes` client, against the API server's own rules and wording
(plugin/pkg/auth/authorizer/rbac/rbac.go, pkg/apis/rbac/v1/evaluation_helpers.go,
k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from tests.fixtures.cluster import Kube, deployment


def as_token(kube: Kube, token: str) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = kube.cluster.url
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(configuration)


def service_account(kube: Kube, namespace: str, name: str, rules: list[dict[str, Any]]) -> Any:
    """A ServiceAccount bound to a Role with `rules`; an AppsV1Api authenticated as it."""
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    rbac = client.RbacAuthorizationV1Api(kube.api)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    )
    token = kube.core.create_namespaced_service_account_token(name, namespace, {"spec": {}})
    return as_token(kube, token.status.token)


def status_of(error: client.ApiException) -> dict[str, Any]:
    return json.loads(error.body)  # type: ignore[no-any-return]


def test_an_unknown_token_is_401_with_the_real_status(kube: Kube) -> None:
    with pytest.raises(client.ApiException) as denied:
        client.CoreV1Api(as_token(kube, "not-a-token")).list_namespace()
    assert status_of(denied.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "details": {},
        "code": 401,
    }


def test_rules_match_verbs_resources_subresources_names_and_namespaces(kube: Kube) -> None:
    namespace = kube.namespace("rbac")
    other = kube.namespace("elsewhere")
    for target in (namespace, other):
        kube.apply(target, deployment("a", replicas=0))
    kube.apply(namespace, deployment("b", replicas=0))
    api = service_account(
        kube,
        namespace,
        "reader",
        [
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"],
             "resourceNames": ["a"]},
            {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
        ],
    )  # fmt: skip
    apps = client.AppsV1Api(api)
    assert apps.read_namespaced_deployment("a", namespace).metadata.name == "a"
    apps.patch_namespaced_deployment_scale("b", namespace, {"spec": {"replicas": 0}})
    with pytest.raises(client.ApiException) as by_name:
        apps.read_namespaced_deployment("b", namespace)
    assert (by_name.value.status, status_of(by_name.value)["message"]) == (
        403,
        'deployments.apps "b" is forbidden: User "system:serviceaccount:rbac:reader" cannot get '
        'resource "deployments" in API group "apps" in the namespace "rbac"',
    )
    assert status_of(by_name.value)["details"] == {
        "name": "b",
        "group": "apps",
        "kind": "deployments",
    }
    with pytest.raises(client.ApiException) as listing:  # a list carries no name
        apps.list_namespaced_deployment(namespace)
    assert status_of(listing.value)["message"] == (
        'deployments.apps is forbidden: User "system:serviceaccount:rbac:reader" cannot list '
        'resource "deployments" in API group "apps" in the namespace "rbac"'
    )
    with pytest.raises(client.ApiException) as elsewhere:  # a Role grants in its namespace
        apps.read_namespaced_deployment("a", other)
    assert elsewhere.value.status == 403
    with pytest.raises(client.ApiException) as scale_read:  # subresources are their own
        apps.read_namespaced_deployment_scale("a", namespace)
    assert 'cannot get resource "deployments/scale"' in status_of(scale_read.value)["message"]
    with pytest.raises(client.ApiException) as cluster_scope:
        client.CoreV1Api(api).list_node()
    assert status_of(cluster_scope.value)["message"].endswith(
        'cannot list resource "nodes" in API group "" at the cluster scope'
    )


def test_an_apply_that_creates_needs_create_and_cluster_roles_bind_per_namespace(
    kube: Kube,
) -> None:
    namespace = kube.namespace("applier")
    api = service_account(
        kube,
        namespace,
        "applier",
        [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch", "get"]}],
    )
    apps = client.AppsV1Api(api)

    def apply() -> Any:
        return apps.patch_namespaced_deployment(
            "d",
            namespace,
            {**deployment("d", replicas=0), "metadata": {"name": "d"}},
            field_manager="applier",
            _content_type="application/apply-patch+yaml",
        )

    with pytest.raises(client.ApiException) as creating:
        apply()
    assert 'cannot create resource "deployments"' in status_of(creating.value)["message"]
    rbac = client.RbacAuthorizationV1Api(kube.api)
    rbac.create_cluster_role(
        {
            "metadata": {"name": "deployment-creator"},
            "rules": [{"apiGroups": ["apps"], "resources": ["*"], "verbs": ["create"]}],
        }
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "creator"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "deployment-creator",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "applier", "namespace": namespace}],
        },
    )
    assert apply().metadata.name == "d"
    other = kube.namespace("not-bound")
    with pytest.raises(client.ApiException) as unbound:
        apps.create_namespaced_deployment(other, deployment("d", replicas=0))
    assert unbound.value.status == 403
