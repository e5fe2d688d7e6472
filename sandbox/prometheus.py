"""A real Prometheus (Debian's) scraping sandbox servers every second, for the tests, the
benchmarks and the demo. Targets come through file-based discovery carrying the same
`__meta_kubernetes_*` labels Kubernetes discovery would, so the product's relabel rules
are exercised as they are."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from llm_rollout.monitoring.scrape import relabel_rules
from sandbox.ports import free_port

SCRAPE_INTERVAL_SECONDS = 1


class PrometheusMissing(RuntimeError):
    """The prometheus binary is not on this machine."""


@dataclass
class LocalPrometheus:
    """A running Prometheus; `set_targets` changes what it scrapes."""

    url: str
    targets_file: Path
    process: subprocess.Popen[bytes]
    argv: list[str] = field(default_factory=list)
    targets: list[dict[str, object]] = field(default_factory=list)

    def add_pod(
        self,
        namespace: str,
        pod: str,
        release: str,
        address: str,
        model: str = "demo-tiny",
    ) -> None:
        """A pod target labelled as the scrape config relabels a real pod (its release is
        what tells a canary from stable)."""
        host, port = address.removeprefix("http://").rsplit(":", 1)
        meta = "__meta_kubernetes_pod_"
        self.targets.append(
            {
                "targets": [f"{pod}.placeholder:1"],
                "labels": {
                    "__meta_kubernetes_namespace": namespace,
                    f"{meta}name": pod,
                    f"{meta}label_llm_rollout_io_release": release,
                    f"{meta}label_app_kubernetes_io_name": model,
                    f"{meta}label_app_kubernetes_io_part_of": "llm-rollout",
                    f"{meta}ip": host,
                    f"{meta}container_port_number": port,
                    f"{meta}container_port_name": "http",
                },
            }
        )
        self._write()

    def clear(self) -> None:
        self.targets.clear()
        self._write()

    def set_targets(self, groups: list[dict[str, object]]) -> None:
        """Replace every target (the pod discovery's feed)."""
        if groups != self.targets:
            self.targets[:] = groups
            self._write()

    def _write(self) -> None:
        temporary = self.targets_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.targets))
        temporary.replace(self.targets_file)

    def query(self, promql: str) -> list[dict[str, object]]:
        response = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        return list(response.json()["data"]["result"])

    def wait_for_samples(self, seconds: float, timeout: float = 60) -> None:
        """Until every target has `seconds` of scraped samples."""
        deadline = time.monotonic() + timeout
        wanted = int(seconds / SCRAPE_INTERVAL_SECONDS)
        while time.monotonic() < deadline:
            result = self.query(f"min(count_over_time(up[{int(seconds) + 2}s]))")
            if result and float(result[0]["value"][1]) >= wanted:  # type: ignore[index]
                return
            time.sleep(0.5)
        raise AssertionError(f"Prometheus did not collect {seconds}s of samples")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        """Start again after `stop()`, on the same port and with the same data."""
        self.stop()
        self.process = _spawn(self.argv, self.targets_file.parent)
        _wait_ready(self.url, self.process, self.targets_file.parent)


def start_prometheus(folder: Path) -> LocalPrometheus:
    if shutil.which("prometheus") is None:
        raise PrometheusMissing(
            "Debian's prometheus is not installed (scripts/test.sh installs it)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    targets = folder / "targets.json"
    targets.write_text("[]")
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL_SECONDS}s",
            "evaluation_interval": f"{SCRAPE_INTERVAL_SECONDS}s",
        },
        "scrape_configs": [
            {
                "job_name": "llm-rollout",
                "scrape_interval": f"{SCRAPE_INTERVAL_SECONDS}s",
                "scrape_timeout": f"{SCRAPE_INTERVAL_SECONDS}s",
                "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}],
                "relabel_configs": relabel_rules(),
            }
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        "prometheus",
        f"--config.file={folder / 'prometheus.yml'}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
        "--log.level=warn",
    ]
    process = _spawn(argv, folder)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, process, folder)
    return LocalPrometheus(url, targets, process, argv)


def _spawn(argv: list[str], folder: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=(folder / "prometheus.log").open("ab")
    )


def _wait_ready(url: str, process: subprocess.Popen[bytes], folder: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((folder / "prometheus.log").read_text())
        time.sleep(0.2)
