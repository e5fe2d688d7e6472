"""`python -m sandbox …`: start the sandbox's stand-ins on free local ports.

python -m sandbox up --dir DIR          Hub with the tiny model + metrics emulators;
                                        writes DIR/endpoints.json; Ctrl-C stops everything
python -m sandbox hub --root DIR        only the Hub (tiny model on main)
python -m sandbox metrics --scenario S  only one emulated vLLM /metrics
python -m sandbox tiny-model OUT        write the tiny model repo to OUT
python -m sandbox demo [--headless …]   the demo: a release loop with real vLLM on CPU
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from contextlib import ExitStack
from pathlib import Path

import click

from sandbox.cluster.cluster import SandboxCluster
from sandbox.demo_command import demo
from sandbox.hub import HubServer
from sandbox.tiny_model import REPO_ID, write_tiny_model
from sandbox.vllm_metrics import SCENARIOS, MetricsEmulator
from sandbox.vllm_metrics.__main__ import serve


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()


def _start_hub(stack: ExitStack, root: Path, port: int) -> tuple[HubServer, str]:
    hub = stack.enter_context(HubServer(root / "hub", port=port))
    commit = hub.store.commit_folder(REPO_ID, write_tiny_model(root / "tiny-llama"))
    return hub, commit


@click.group()
def main() -> None:
    """Local stand-ins for the Hugging Face Hub and vLLM pods (tests and demo only)."""


@main.command()
@click.option("--dir", "folder", type=click.Path(path_type=Path), required=True)
@click.option("--scenario", default="healthy", type=click.Choice(sorted(SCENARIOS)))
def up(folder: Path, scenario: str) -> None:
    """Start the cluster (kubeconfig in DIR), the Hub (tiny model), and a stable and a canary
    metrics emulator; write DIR/endpoints.json; stop everything on Ctrl-C."""
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        cluster = stack.enter_context(SandboxCluster(folder / "cluster"))
        hub, commit = _start_hub(stack, folder, 0)
        stable = stack.enter_context(MetricsEmulator("healthy", seed=1))
        canary = stack.enter_context(MetricsEmulator(scenario, seed=2))
        endpoints = {
            "kubernetes": cluster.url,
            "kubeconfig": str(cluster.kubeconfig),
            "nfs_root": str(cluster.root / "nfs"),
            "hub": hub.url,
            "hub_repo": REPO_ID,
            "hub_commit": commit,
            "metrics": {"stable": stable.url, "canary": canary.url},
        }
        (folder / "endpoints.json").write_text(json.dumps(endpoints, indent=2) + "\n")
        click.echo(json.dumps(endpoints, indent=2))
        click.echo(f"sandbox up; try: KUBECONFIG={cluster.kubeconfig} kubectl get nodes", err=True)
        click.echo("Ctrl-C stops it", err=True)
        _wait_for_interrupt()
    (folder / "endpoints.json").unlink(missing_ok=True)
    click.echo("sandbox stopped", err=True)


@main.command()
@click.option("--dir", "folder", type=click.Path(path_type=Path), required=True)
def cluster(folder: Path) -> None:
    """Start only the cluster; its kubeconfig is DIR/kubeconfig."""
    with SandboxCluster(folder) as running:
        click.echo(f"KUBECONFIG={running.kubeconfig}  (API at {running.url})")
        sys.stdout.flush()
        _wait_for_interrupt()


@main.command()
@click.option("--root", type=click.Path(path_type=Path), required=True)
@click.option("--port", default=0, help="0 picks a free port.")
@click.option(
    "--serve",
    multiple=True,
    metavar="REPO_ID=FOLDER",
    help="Also commit FOLDER as REPO_ID's main branch (repeatable).",
)
def hub(root: Path, port: int, serve: tuple[str, ...]) -> None:
    """Serve the Hub API with the tiny model (and any --serve folders) on branch main."""
    with ExitStack() as stack:
        server, commit = _start_hub(stack, root, port)
        lines = [f"{REPO_ID} main = {commit}"]
        for item in serve:
            repo_id, _, folder = item.partition("=")
            lines.append(f"{repo_id} main = {server.store.commit_folder(repo_id, Path(folder))}")
        click.echo(f"HF_ENDPOINT={server.url}", nl=True)
        for line in lines:
            click.echo(f"  {line}")
        sys.stdout.flush()
        _wait_for_interrupt()


@main.command()
@click.option("--scenario", default="healthy", type=click.Choice(sorted(SCENARIOS)))
@click.option("--latency-scale", default=1.0, help="Multiply every latency (1.3 = 30% slower).")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=0, help="0 picks a free port.")
@click.option("--model-name", default="tiny-llama")
@click.option(
    "--load-seconds",
    default=0.0,
    help="Wait this long before listening, as vLLM loads a model before it opens its port.",
)
def metrics(
    scenario: str, latency_scale: float, host: str, port: int, model_name: str, load_seconds: float
) -> None:
    """Serve one emulated vLLM /metrics (what `python -m sandbox.vllm_metrics` serves)."""
    serve(scenario, latency_scale, host, port, model_name, load_seconds)


@main.command("tiny-model")
@click.argument("out", type=click.Path(path_type=Path))
def tiny_model(out: Path) -> None:
    """Write the tiny Llama repo into OUT."""
    click.echo(write_tiny_model(out))


main.add_command(demo)

if __name__ == "__main__":
    main()
