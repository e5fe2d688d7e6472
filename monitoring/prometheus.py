"""Reading the gate's measurements from Prometheus through `prometheus-api-client`, in one
round trip, failing closed: any transport or API problem is reported, never guessed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from monitoring.queries import Query, batched

# Well under Dagster's 60 s sensor limit, with room for the rest of a tick.
QUERY_TIMEOUT_SECONDS = 10
NO_RETRIES = Retry(total=0)  # a retry would double the tick; the next tick is the retry


class PrometheusFailed(Exception):
    """Prometheus could not answer: unreachable, timed out, or an API error."""


@dataclass(frozen=True)
class Measured:
    """Values by (metric, track); several values for a key mean ambiguous series."""

    values: dict[tuple[str, str], list[float]]


def measure(url: str, queries: list[Query], timeout: int = QUERY_TIMEOUT_SECONDS) -> Measured:
    """Run every query as one batched instant query."""
    # POST: the batched query is longer than some proxies allow in a URL
    client = PrometheusConnect(
        url=url, disable_ssl=True, retry=NO_RETRIES, timeout=timeout, method="POST"
    )
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
        raw = series.get("value", [0, "NaN"])[1]
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        values.setdefault(key, []).append(value)
    return Measured(values)
