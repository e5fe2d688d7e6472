"""How many requests wait in each local release's vLLM queue, read from its pods' /metrics.

vLLM exports `vllm:num_requests_waiting` (one series per engine); a release's figure is the
mean over its pods of each pod's sum. A reading older than a few polls, or a pod that did
not answer, gives no figure: the queue limit then does not apply (a dead pod shows up as
errors and timeouts, which fall back on their own).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from llm_rollout.router.config import RouterConfig

log = logging.getLogger(__name__)

WAITING_METRIC = "vllm:num_requests_waiting"
# A scrape must not outlive the poll it belongs to; vLLM answers /metrics in milliseconds.
SCRAPE_TIMEOUT_SECONDS = 2.0
# Readings older than this many polls are stale: the limit is not applied on old news.
STALE_AFTER_POLLS = 3


def waiting_requests(metrics_text: str) -> float | None:
    """The sum of `vllm:num_requests_waiting` over a /metrics page; None when absent."""
    total, seen = 0.0, False
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == WAITING_METRIC:
                total += sample.value
                seen = True
    return total if seen else None


class QueueWatcher:
    """Polls every release's /metrics; `waiting(release_id)` is the latest fresh mean."""

    def __init__(self, config: Callable[[], RouterConfig]) -> None:
        self._config = config
        self._readings: dict[str, tuple[float, float]] = {}  # id → (waiting, monotonic time)

    def waiting(self, release_id: str) -> float | None:
        """The release's mean waiting requests per pod, or None when unknown or stale."""
        reading = self._readings.get(release_id)
        if reading is None:
            return None
        value, at = reading
        stale_after = STALE_AFTER_POLLS * self._config().queue_poll_seconds
        return value if time.monotonic() - at <= stale_after else None

    async def poll_once(self, session: aiohttp.ClientSession) -> None:
        """Read every release's pods once."""
        config = self._config()
        for release in config.releases:
            pods = await asyncio.gather(
                *(self._scrape(session, url) for url in release.queue_sources)
            )
            if pods and all(value is not None for value in pods):
                mean = sum(value for value in pods if value is not None) / len(pods)
                self._readings[release.id] = (mean, time.monotonic())

    async def _scrape(self, session: aiohttp.ClientSession, url: str) -> float | None:
        try:
            timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_SECONDS)
            async with session.get(url, timeout=timeout) as response:
                if response.status != 200:
                    return None
                return waiting_requests(await response.text())
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.debug("queue scrape of %s failed: %s", url, error)
            return None
