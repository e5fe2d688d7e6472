"""The router's traffic on a cluster: each release's Service, and the router's config
ConfigMap ('<model>-router', router.yaml) that says which releases serve at which weight.

Two writers share it. The release controller (rollout.controller.route_traffic) writes the
weights its phase calls for (stable only; the canary at `rollout.canary_weight` while gated;
`degraded` while holding or rolling back). While releases replace each other, the lifecycle's
shift writes the weights of what is serving (`follow`): each release's available pods, the
ones being scaled down counted at their new size, keeping the controller's `degraded` and
shadow. Both write only when the document changed, so a tick that decides nothing writes
nothing. Every function here is a no-op for a spec without `routing:`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from llm_rollout.k8s import labels as names
from llm_rollout.k8s import router_manifests, workloads
from llm_rollout.k8s.cluster import ClusterClient, NotFound
from llm_rollout.router.config import Release as RoutedRelease
from llm_rollout.router.config import RouterConfig, RouterConfigError, config_for, parse_config
from llm_rollout.spec import ReleaseSpec

log = logging.getLogger(__name__)

Weights = dict[str, float]  # release id → share of local traffic, in percent


@dataclass
class RouterTraffic:
    """Reads and writes one model's routed traffic in the cluster."""

    cluster: ClusterClient
    spec: ReleaseSpec

    @property
    def enabled(self) -> bool:
        return self.spec.routing is not None

    # -- release Services -----------------------------------------------------------------

    def add_release(self, release_id: str) -> None:
        """Apply the release's Service (with its Deployment)."""
        if self.enabled:
            self.cluster.apply(router_manifests.release_service(self.spec, release_id))

    def remove_release(self, release_id: str) -> None:
        """Delete the release's Service (with its Deployment, when retention drops it)."""
        if not self.enabled:
            return
        name = router_manifests.release_service_name(self.spec, release_id)
        with contextlib.suppress(NotFound):
            self.cluster.delete("Service", name, self.spec.namespace)

    def release_url(self, release_id: str) -> str:
        """The release's URL by its Service's cluster IP (the Service applied if missing, as
        for a release deployed before the model had a router)."""
        name = router_manifests.release_service_name(self.spec, release_id)
        service = self.cluster.find("Service", name, self.spec.namespace)
        if service is None:
            service = self.cluster.apply(router_manifests.release_service(self.spec, release_id))
        cluster_ip = (service.get("spec") or {}).get("clusterIP")
        return router_manifests.release_url(self.spec, release_id, cluster_ip)

    # -- the config -----------------------------------------------------------------------

    def current(self) -> RouterConfig | None:
        """The config the router's ConfigMap holds (None when there is none, or it does not
        load: the next write replaces it)."""
        config_map = self.cluster.find(
            "ConfigMap", router_manifests.router_name(self.spec), self.spec.namespace
        )
        text = ((config_map or {}).get("data") or {}).get(router_manifests.CONFIG_KEY)
        if not text:
            return None
        try:
            return parse_config(Path(router_manifests.CONFIG_PATH), text.encode())
        except RouterConfigError as error:
            log.warning("the router's ConfigMap does not load (%s); it will be rewritten", error)
            return None

    def write(
        self, weights: Weights, degraded: str | None = None, shadow_release: str | None = None
    ) -> RouterConfig | None:
        """Write the router's config: `weights` by release, `degraded` (None when healthy),
        the shadow release (kept only while it is among the releases). Nothing is written
        when the document would not change."""
        if not self.enabled:
            return None
        releases = [
            RoutedRelease(id=release_id, url=self.release_url(release_id), weight=weight)
            for release_id, weight in weights.items()
        ]
        shadow = shadow_release if shadow_release in weights else None
        config = config_for(self.spec, releases, degraded=degraded, shadow_release=shadow)
        manifest = router_manifests.router_config_map(self.spec, config)
        live = self.cluster.find("ConfigMap", manifest["metadata"]["name"], self.spec.namespace)
        if live is None or (live.get("data") or {}) != manifest["data"]:
            self.cluster.apply(manifest)
            shares = ", ".join(f"{r.id} {r.weight:g}%" for r in releases) or "no release"
            log.info(
                "router of %s: %s%s",
                self.spec.name,
                shares,
                f"; degraded: {degraded}" if degraded else "",
            )
        return config

    def ensure(self, release_id: str | None) -> None:
        """Write a config with `release_id` serving everything if the router has none yet
        (its pods wait for the ConfigMap to mount)."""
        if self.enabled and release_id and self.current() is None:
            self.write({release_id: 100.0})

    def follow(self, default: str | None = None) -> None:
        """Weights of what is serving now (`serving_weights`), or `default` at 100 when
        nothing is; the stored `degraded` and shadow are kept."""
        if not self.enabled:
            return
        weights = self.serving_weights() or ({default: 100.0} if default else {})
        if not weights:
            return
        current = self.current()
        self.write(
            weights,
            current.degraded if current else None,
            current.shadow.release if current and current.shadow else None,
        )

    def serving_weights(self) -> Weights:
        """Each release's share by its serving pods: available replicas, and no more than
        its Deployment's replicas (a release being scaled down counts at its new size, so
        the router leaves its pods before they stop). Releases with none are left out."""
        counts: dict[str, int] = {}
        selector = names.model_selector(self.spec)
        for kind in workloads.kinds_for(self.spec):
            for workload in self.cluster.list_objects(kind, self.spec.namespace, selector):
                release_id = (workload["metadata"].get("labels") or {}).get(names.RELEASE, "")
                if not release_id or workload["metadata"]["name"] != names.workload_name(
                    self.spec, release_id
                ):
                    continue  # the fixed Deployments of earlier versions have no release Service
                serving = min(workloads.available(workload), workloads.replicas(workload))
                if serving > 0:
                    counts[release_id] = serving
        return shares(counts)


def shares(counts: dict[str, int]) -> Weights:
    """Counts as percent shares (two decimals), in the order given."""
    total = sum(counts.values())
    return {key: round(100.0 * count / total, 2) for key, count in counts.items() if count > 0}
