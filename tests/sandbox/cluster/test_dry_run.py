"""dryRun=All as the API server does it: every write is validated (conflicts, missing
objects, bad values) and answered with the object it would store, and nothing is stored
(k8s.io/apiserver/pkg/endpoints/handlers create.go/update.go/patch.go/delete.go: the
storage write is skipped when `dryRun` is set). Through kubectl (`--dry-run=server`) and the
`kubernetes` client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client

from tests.fixtures.cluster import Kube, deployment, wait_for
from tests.sandbox.cluster.test_kubectl import MANIFEST, kubectl


def test_kubectl_apply_and_delete_with_dry_run_server_change_nothing(
    kube: Kube, tmp_path: Path
) -> None:
    manifest = tmp_path / "emu.yaml"
    manifest.write_text(MANIFEST)
    applied = kubectl(kube, "apply", "--server-side", "--validate=false", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr

    def ready() -> bool:
        status = kube.apps.read_namespaced_deployment("emu", "kubectl-demo").status
        return bool(status and status.ready_replicas == 2 and status.observed_generation == 1)

    wait_for(ready)
    before = kube.apps.read_namespaced_deployment("emu", "kubectl-demo")
    revision = kube.cluster.store.revision
    manifest.write_text(MANIFEST.replace("emulator:1", "emulator:2"))
    dry = kubectl(
        kube,
        "apply",
        "--server-side",
        "--dry-run=server",
        "--validate=false",
        "-f",
        str(manifest),
        "-o",
        "json",
    )
    assert dry.returncode == 0, dry.stderr
    answered = json.loads(dry.stdout)
    items = answered.get("items") or [answered]
    emu = next(i for i in items if i["kind"] == "Deployment")
    assert emu["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2")
    deleted = kubectl(kube, "delete", "deployment", "emu", "-n", "kubectl-demo", "--dry-run=server")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.rstrip().endswith("(server dry run)")
    after = kube.apps.read_namespaced_deployment("emu", "kubectl-demo")
    assert after.spec.template.spec.containers[0].image.endswith(":1")
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.metadata.generation == before.metadata.generation
    assert kube.cluster.store.revision == revision  # no write, so no watch event either
    assert len(kube.core.list_namespaced_pod("kubectl-demo").items) == 2


def test_client_writes_with_dry_run_all_are_answered_not_stored(kube: Kube) -> None:
    namespace = kube.namespace("dry")
    created = kube.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "c"}, "data": {"k": "v"}}, dry_run="All"
    )
    assert created.metadata.uid and created.data == {"k": "v"}
    with pytest.raises(client.ApiException) as missing:
        kube.core.read_namespaced_config_map("c", namespace)
    assert missing.value.status == 404
    stored = kube.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "s"}, "data": {"k": "v"}}
    )
    answered = kube.core.patch_namespaced_config_map(
        "s", namespace, {"data": {"k": "w"}}, dry_run="All"
    )
    assert answered.data == {"k": "w"}
    assert answered.metadata.resource_version == stored.metadata.resource_version
    kube.core.delete_namespaced_config_map("s", namespace, dry_run="All")
    kept = kube.core.read_namespaced_config_map("s", namespace)
    assert (kept.data, kept.metadata.resource_version) == (
        {"k": "v"},
        stored.metadata.resource_version,
    )
    kube.apply(namespace, deployment("d", replicas=0))
    patched = kube.apps.patch_namespaced_deployment(
        "d", namespace, {"metadata": {"labels": {"x": "y"}}}, dry_run="All"
    )
    assert patched.metadata.labels == {"x": "y"}
    scaled = kube.apps.patch_namespaced_deployment_scale(
        "d", namespace, {"spec": {"replicas": 3}}, dry_run="All"
    )
    assert scaled.spec.replicas == 3
    kube.apps.delete_namespaced_deployment("d", namespace, dry_run="All")
    still = kube.apps.read_namespaced_deployment("d", namespace)
    assert (still.spec.replicas, still.metadata.labels, still.metadata.generation) == (0, None, 1)


def test_a_dry_run_is_still_validated(kube: Kube) -> None:
    namespace = kube.namespace("dry-checked")
    kube.apply(namespace, deployment("d", replicas=0), manager="llm-rollout")
    kube.apps.patch_namespaced_deployment_scale(
        "d", namespace, {"spec": {"replicas": 1}}, field_manager="kubectl-scale"
    )
    with pytest.raises(client.ApiException) as conflict:
        kube.apps.patch_namespaced_deployment(
            "d",
            namespace,
            deployment("d", replicas=0),
            field_manager="llm-rollout",
            dry_run="All",
            _content_type="application/apply-patch+yaml",
        )
    assert conflict.value.status == 409
    with pytest.raises(client.ApiException) as missing:
        kube.apps.delete_namespaced_deployment("nope", namespace, dry_run="All")
    assert missing.value.status == 404
    with pytest.raises(client.ApiException) as bogus:
        kube.apps.delete_namespaced_deployment("d", namespace, dry_run="Some")
    assert bogus.value.status == 400
    assert kube.apps.read_namespaced_deployment("d", namespace).spec.replicas == 1
