"""Reading the gate's measurements from Prometheus through `prometheus-api-client`, in one
round trip, failing closed: any transport or API problem is reported, never guessed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from llm_rollout.monitoring.queries import Query, batched

# Well under Dagster's 60 s sensor limit, with room for the rest of a tick.
QUERY_TIMEOUT_SECONDS = 10
NO_RETRIES = Retry(total=0)  # a retry would double the tick; the next tick is the retry


class PrometheusFailed(Exception):
    """Prometheus could not answer: unreachable, timed out, or an API error."""


@dataclass(frozen=True)
class Measured:
    """Values by (metric, track); several values for a key mean ambiguous series."""

    values: dict[tuple[str, str], list[float]]


def _client(url: str, timeout: int) -> PrometheusConnect:
    # POST: the batched query is longer than some proxies allow in a URL
    return PrometheusConnect(
        url=url, disable_ssl=True, retry=NO_RETRIES, timeout=timeout, method="POST"
    )


def measure_range(
    url: str,
    queries: list[Query],
    seconds: int,
    step: int,
    timeout: int = QUERY_TIMEOUT_SECONDS,
) -> dict[tuple[str, str], list[float]]:
    """Every query evaluated every `step` seconds over the last `seconds` (one round trip);
    a missing point is NaN, so the series of all keys line up."""
    end = datetime.now(UTC)
    start = end - timedelta(seconds=seconds)
    times = [start.timestamp() + i * step for i in range(seconds // step + 1)]
    try:
        result = _client(url, timeout).custom_query_range(
            batched(queries), start_time=start, end_time=end, step=str(step)
        )
    except (PrometheusApiClientException, requests.RequestException, ValueError) as error:
        raise PrometheusFailed(f"Prometheus at {url} failed: {str(error)[:300]}") from error
    series: dict[tuple[str, str], list[float]] = {}
    for found in result:
        labels = found.get("metric", {})
        points = {round(float(t) - start.timestamp()): _number(v) for t, v in found["values"]}
        key = (labels.get("gate_metric", ""), labels.get("gate_track", ""))
        series[key] = [points.get(round(t - start.timestamp()), math.nan) for t in times]
    return series


def _number(raw: object) -> float:
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def measure(url: str, queries: list[Query], timeout: int = QUERY_TIMEOUT_SECONDS) -> Measured:
    """Run every query as one batched instant query."""
    client = _client(url, timeout)
    try:
        result = client.custom_query(batched(queries), params={"timeout": f"{timeout}s"})
    except requests.Timeout as error:
        raise PrometheusFailed(f"Prometheus at {url} did not answer in {timeout}s") from error
    except requests.ConnectionError as error:
        raise PrometheusFailed(f"cannot reach Prometheus at {url}") from error
    except (PrometheusApiClientException, requests.RequestException, ValueError) as error:
        raise PrometheusFailed(f"Prometheus at {url} failed: {str(error)[:300]}") from error
    values: dict[tuple[str, str], list[float]] = {}
    for series in result:
        labels = series.get("metric", {})
        key = (labels.get("gate_metric", ""), labels.get("gate_track", ""))
        values.setdefault(key, []).append(_number(series.get("value", [0, "NaN"])[1]))
    return Measured(values)
