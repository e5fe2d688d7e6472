"""The whole sandbox world a release runs in: the cluster, the Hub with the tiny model, a real
Prometheus discovering the cluster's pods, and the environment that points llm-rollout (and
Dagster's processes) at them. Used by the demo and the end-to-end tests."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from kubernetes import client, config

from sandbox.cluster.cluster import DEFAULT_NODES, NodeSpec, SandboxCluster
from sandbox.discovery import PodDiscovery
from sandbox.hub import HubServer
from sandbox.prometheus import SCRAPE_INTERVAL_SECONDS, LocalPrometheus, start_prometheus
from sandbox.running import Running
from sandbox.tiny_model import REPO_ID, write_tiny_model

# Where the spec of the demo (sandbox/specs/demo-tiny.yaml) says its weights live.
NFS_SERVER = "nfs.sandbox.local"
NFS_PATH = "/exports/models"


class SandboxWorld(Running):
    """Start with `with SandboxWorld(root) as world:`; `world.env()` configures llm-rollout."""

    def __init__(
        self,
        root: Path,
        nodes: tuple[NodeSpec, ...] = DEFAULT_NODES,
        tiny_model_dir: Path | None = None,
    ) -> None:
        self.root = root
        self.cluster = SandboxCluster(root / "cluster", nodes)
        self.hub = HubServer(root / "hub")
        self._tiny_model_dir = tiny_model_dir
        self.prometheus: LocalPrometheus | None = None
        self.discovery: PodDiscovery | None = None
        self.api: client.ApiClient | None = None
        self.commit = ""

    def start(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.cluster.start()
            self.hub.start()
            model = self._tiny_model_dir or write_tiny_model(self.root / "tiny-llama")
            self.commit = self.hub.store.commit_folder(REPO_ID, model)
            self.prometheus = start_prometheus(self.root / "prometheus")
            self.api = config.new_client_from_config(str(self.cluster.kubeconfig))
            self.discovery = PodDiscovery(self.api, self.prometheus).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.discovery:
            self.discovery.stop()
        if self.prometheus:
            self.prometheus.stop()
        self.hub.stop()
        self.cluster.stop()

    @property
    def weights_root(self) -> Path:
        """The folder behind the NFS export the demo spec mounts."""
        return self.cluster.nfs_export(NFS_SERVER, NFS_PATH)

    def env(self, models_dir: Path) -> dict[str, str]:
        """What llm-rollout's Dagster processes need to release into this world."""
        assert self.prometheus is not None, "start() first"
        return {
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "HF_ENDPOINT": self.hub.url,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "LLM_ROLLOUT_WEIGHTS_ROOT": str(self.weights_root),
            "LLM_ROLLOUT_PROMETHEUS_URL": self.prometheus.url,
            "LLM_ROLLOUT_SCRAPE_INTERVAL_SECONDS": str(SCRAPE_INTERVAL_SECONDS),
            "LLM_ROLLOUT_MODELS_DIR": str(models_dir),
            # the sandbox's images live in no registry that could be asked for a digest
            "LLM_ROLLOUT_RESOLVE_DIGESTS": "false",
        }

    def service_url(self, namespace: str, name: str) -> str:
        """The address a Service answers on inside this machine (its cluster IP)."""
        assert self.api is not None, "start() first"
        service = client.CoreV1Api(self.api).read_namespaced_service(name, namespace)
        return f"http://{service.spec.cluster_ip}:{service.spec.ports[0].port}"
