"""`llm-rollout gate SPEC --prometheus URL`: the gate's verdict for the current window."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click
from kubernetes.config import ConfigException

from llm_rollout.cli.errors import fail
from llm_rollout.cli.weights import load_or_exit
from llm_rollout.k8s.cluster import ClusterClient, ClusterError
from llm_rollout.k8s.history import History, ReleaseHistory
from llm_rollout.monitoring.gate import Verdict, judge
from llm_rollout.monitoring.prometheus import PrometheusFailed, measure
from llm_rollout.monitoring.queries import gate_queries
from llm_rollout.rollout.controller import track


@click.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--prometheus",
    "url",
    envvar="LLM_ROLLOUT_PROMETHEUS_URL",
    required=True,
    help="Prometheus base URL (env LLM_ROLLOUT_PROMETHEUS_URL).",
)
@click.option(
    "--scrape-interval",
    default=15.0,
    show_default=True,
    help="Seconds between scrapes of the vLLM pods (for staleness).",
)
@click.option(
    "--canary", "canary_release", help="The canary's release id (default: the cluster's)."
)
@click.option("--stable", "stable_release", help="The stable release id (default: the cluster's).")
@click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="KUBECONFIG",
    help="Where the release history is read (which releases are canary and stable).",
)
@click.option("--show-queries", is_flag=True, help="Print the PromQL of every measurement.")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON document on stdout (with the queries)."
)
def gate(
    spec_path: Path,
    url: str,
    scrape_interval: float,
    canary_release: str | None,
    stable_release: str | None,
    kubeconfig: Path | None,
    show_queries: bool,
    as_json: bool,
) -> None:
    """Measure canary vs stable over the spec's window and print the verdict as a table.
    It judges one window; what the release controller does with it depends on the windows
    before (`llm-rollout status` shows its phase).

    Exit status: 0 pass, 1 fail, 2 inconclusive, 3 error.
    """
    spec = load_or_exit(spec_path)
    history = History([], None, None)
    if not (canary_release and stable_release):
        try:
            cluster = ClusterClient.from_kubeconfig(str(kubeconfig) if kubeconfig else None)
            history = ReleaseHistory(cluster, spec).read()
        except (ConfigException, ClusterError) as error:
            fail(
                f"cannot read which releases are canary and stable ({error}); pass --canary "
                "and --stable release ids, or a kubeconfig"
            )
    canary = canary_release or history.canary
    stable = stable_release or history.stable
    if not (canary and stable):
        fail(
            f"{spec.name} has no canary and stable release to compare "
            f"(canary {canary or 'none'}, stable {stable or 'none'})"
        )
    queries = gate_queries(spec, track(history, "canary", canary), track(history, "stable", stable))
    try:
        values = measure(url, queries).values
        verdict = judge(spec, values, scrape_interval, queries=queries)
    except PrometheusFailed as failure:
        verdict = judge(spec, None, scrape_interval, str(failure), queries)
    if as_json:
        click.echo(
            json.dumps(_verdict_document(spec.name, canary, stable, spec.gate.window, verdict))
        )
    else:
        click.echo(f"{spec.name}: canary {canary} vs stable {stable} over {spec.gate.window}")
        click.echo(verdict.table())
        if show_queries:
            for query in queries:
                click.echo(f"{query.metric}/{query.track}: {query.promql}")
    codes = {"Pass": 0, "Fail": 1, "Inconclusive": 2, "Error": 3}
    sys.exit(codes[verdict.window.value])


def _verdict_document(
    model: str, canary: str, stable: str, window: str, verdict: Verdict
) -> dict[str, Any]:
    """`gate --json`: the window's outcome and every measurement (a value that is missing
    or not a number is null: JSON has no NaN)."""
    return {
        "model": model,
        "canary": canary,
        "stable": stable,
        "window": window,
        "outcome": verdict.window.value,
        "reason": verdict.reason,
        "measurements": [
            {
                "metric": m.name,
                "canary": _number(m.canary),
                "stable": _number(m.stable),
                "limit": m.threshold,
                "outcome": m.outcome.value,
                "reason": m.reason,
                "query": m.query,
            }
            for m in verdict.measurements
        ],
        "queries": [
            {"metric": q.metric, "track": q.track, "promql": q.promql} for q in verdict.queries
        ],
    }


def _number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
