"""The model's NetworkPolicy is applied with the release: the sandbox API serves the kind."""

from __future__ import annotations

from kubernetes import client

from llm_rollout.k8s import manifests
from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.spec import ReleaseSpec
from tests.fixtures.cluster import Kube


def test_the_sandbox_stores_and_serves_the_network_policy(
    kube: Kube, cluster: ClusterClient, spec: ReleaseSpec
) -> None:
    resources = client.NetworkingV1Api(kube.api).get_api_resources().resources
    assert "networkpolicies" in {r.name for r in resources}
    spec = type(spec).model_validate({**spec.model_dump(), "network": {"restrict_ingress": True}})
    for obj in manifests.platform_objects(spec):
        cluster.apply(obj)
    stored = cluster.get("NetworkPolicy", spec.name, spec.namespace)
    assert stored["spec"] == manifests.network_policy(spec)["spec"]
    listed = client.NetworkingV1Api(kube.api).list_namespaced_network_policy(spec.namespace)
    assert [p.metadata.name for p in listed.items] == [spec.name]
