"""`python -m sandbox demo` (what `bash scripts/demo.sh` runs): the whole loop in the
sandbox — with the Dagster UI, or headless. It lives with the sandbox, outside the product:
the installed `llm-rollout` never imports the sandbox."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from llm_rollout.k8s.labels import workload_name
from sandbox.dagster_home import REPO_ROOT
from sandbox.demo import DEMO_SPEC, SCENARIOS, Demo, DemoFailed


@click.command()
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Choice(sorted(SCENARIOS)),
    help="With --headless: the releases to run, in order (repeatable; default good).",
)
@click.option("--headless", is_flag=True, help="No UI: run the scenarios, print, exit.")
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(".demo"),
    show_default=True,
    help="Where the sandbox and DAGSTER_HOME live (kept between runs).",
)
@click.option("--port", default=3000, show_default=True, help="The Dagster UI's port.")
def demo(scenarios: tuple[str, ...], headless: bool, folder: Path, port: int) -> None:
    """Release the tiny model to a local sandbox cluster running real vLLM on CPU: the
    first release is installed, then a second one is canaried and promoted or rolled back.

    Exit status with --headless: 0 when every scenario ended as expected (good: promoted
    with no failed request and stable never below desired; bad, stuck: rolled back with
    stable untouched; subtle: rolled back by the quality gate alone, every other measurement
    passing), 1 otherwise."""
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    signal.signal(signal.SIGINT, _interrupt)
    running = Demo(folder, lambda line: click.echo(line))
    try:
        running.start(None if headless else port)
        stable = running.install_stable()
        if headless:
            outcomes = [running.run(SCENARIOS[name]) for name in scenarios or ("good",)]
            click.echo("")
            for outcome in outcomes:
                click.echo(
                    f"{'PASS' if outcome.ok else 'FAIL'} {outcome.scenario}: {outcome.summary}"
                )
            sys.exit(0 if all(o.ok for o in outcomes) else 1)
        click.echo(
            UI_GUIDE.format(
                port=port,
                kubeconfig=running.world.cluster.kubeconfig,
                namespace=running.spec.namespace,
                stable=workload_name(running.spec, stable),
                spec=DEMO_SPEC.relative_to(REPO_ROOT),
            )
        )
        running.follow()  # until Ctrl-C or SIGTERM
    except DemoFailed as failure:
        click.echo(f"demo failed: {failure}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        click.echo("stopping the demo…", err=True)
        running.stop()


def _interrupt(signum: int, frame: object) -> None:
    # the first signal stops the demo; later ones (a second Ctrl-C, `timeout` forwarding the
    # same SIGTERM) must not cut the clean-up short and leave processes behind
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


UI_GUIDE = """
The demo is up. Open the Dagster UI: http://127.0.0.1:{port}

  Assets → demo_tiny: weights and image → release → live (release 1 is live, serving
  chat traffic). Then Jobs → demo_tiny_rollout → Launchpad, paste one of these, Launch:

    ops: {{demo_tiny__weights: {{config: {{revision: v2}}}}}}               # good: promoted
    ops: {{demo_tiny__weights: {{config: {{revision: v2-system-first}}}}}}  # bad: rolled back
    ops: {{demo_tiny__weights: {{config: {{revision: v2-perturbed}}}}}}  # subtle: by quality
    ops: {{demo_tiny__image: {{config: {{reference: "vllm/vllm-openai:v0.32.O"}}}}}}  # stuck

  Watch Assets → demo_tiny → release → Checks → gate, and Automation → demo_tiny_gate;
  the table below follows the same releases. Ctrl-C stops everything.

  The sandbox cluster answers kubectl (and `llm-rollout status`) like a real one:

    export KUBECONFIG={kubeconfig}
    .venv/bin/kubectl -n {namespace} get deployments,pods -L llm-rollout.io/track  # +router
    .venv/bin/kubectl -n {namespace} logs deployment/{stable}       # vLLM's own log
    .venv/bin/kubectl -n {namespace} describe deployments -l llm-rollout.io/track=canary
    .venv/bin/llm-rollout status {spec}
"""
