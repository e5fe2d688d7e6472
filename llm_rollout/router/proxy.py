"""The router's HTTP front: OpenAI-compatible endpoints, routes, fallback, weights, shadow.

A request is matched to a route (by its `model` and task header). A local route picks a
release by weight (sticky per session), and goes to the route's cloud fallback instead when
the controller marked the model degraded, when that release's vLLM queue is over the
route's limit, or when the release fails before the first token (5xx, unreachable, timed
out). Once an answer's first bytes have been sent, nothing is retried: a stream that breaks
ends with an OpenAI-style error event. `local_only` routes never leave the cluster: when
local fails they answer 503 with the reason. See docs/router.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from llm_rollout.router.config import Release, RouterConfig, RouterConfigError, cloud_api_key
from llm_rollout.router.metrics import RouterMetrics, create_metrics
from llm_rollout.router.queue import QueueWatcher
from llm_rollout.router.selection import ReleasePicker, ShareSampler
from llm_rollout.router.usage import UsageScanner
from llm_rollout.spec.routing import LOCAL, Route

log = logging.getLogger(__name__)

GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
# Prompts can carry images as base64: well above aiohttp's 1 MiB default, far below memory.
MAX_REQUEST_BYTES = 64 * 1024 * 1024
# An upstream's error body is relayed to the client; a broken server may send anything.
MAX_ERROR_BODY_BYTES = 64 * 1024
# A refused or unroutable connection should fall back at once, not after the first-token wait.
CONNECT_TIMEOUT_SECONDS = 5.0
# aiohttp's default pool holds 100 connections; past that, requests wait inside the router for
# a free one (counted against their first-token time, so they would fall back for nothing).
# vLLM pods each run up to 256 sequences by default: the pool must not be the bottleneck.
MAX_UPSTREAM_CONNECTIONS = 10_000
# Shadow copies must never starve real traffic: past this many in flight, copies are skipped.
MAX_SHADOW_IN_FLIGHT = 32
# Every SSE answer of the OpenAI API and of vLLM (serving_chat.py, serving_completion.py) ends
# with this event; a stream that stops without it was cut off, however the connection closed.
STREAM_END = b"data: [DONE]"


class UpstreamFailure(Exception):
    """A backend failed before any answer bytes reached the client (so falling back is safe)."""

    def __init__(
        self,
        kind: str,
        status: int,
        message: str,
        body: bytes | None = None,
        never_connected: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind  # error (5xx), timeout, unreachable
        self.status = status  # what the client is told if nothing else answers
        self.message = message
        self.body = body
        # no connection was made, so the request never reached the backend
        self.never_connected = never_connected


@dataclass
class Call:
    """One client request as the router handles it."""

    request: web.Request
    body: dict[str, Any]
    route: Route
    request_id: str
    started: float
    stream: bool


@dataclass
class Opened:
    """A backend's answer whose first bytes (the whole body when not streamed) are in hand."""

    response: aiohttp.ClientResponse
    first: bytes


class Router:
    """One model's router: the current config, its metrics and the upstream HTTP session."""

    def __init__(self, config: RouterConfig) -> None:
        self.metrics: RouterMetrics = create_metrics()
        self.queue = QueueWatcher(lambda: self.config)
        self.last_reload_error: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self.apply(config)

    def apply(self, config: RouterConfig) -> None:
        """Put a new config in force (the weights' round-robin starts afresh)."""
        self.config = config
        self.picker = ReleasePicker(config.releases)
        self.shadow_sampler = ShareSampler(config.shadow.share) if config.shadow else None
        self.metrics.degraded.set(1 if config.degraded else 0)

    def reloaded(self, config: RouterConfig) -> None:
        """The watcher read a new valid config."""
        self.apply(config)
        self.last_reload_error = None
        self.metrics.config_reloads.labels("ok").inc()
        log.info("router config reloaded: %s", _summary(config))

    def reload_failed(self, error: RouterConfigError) -> None:
        """The watcher read an invalid config: the current one stays."""
        self.last_reload_error = str(error)
        self.metrics.config_reloads.labels("error").inc()
        log.error("router config not reloaded, keeping the previous one: %s", error)

    # ----------------------------------------------------------------- the aiohttp app

    def app(self, watcher_task: Any = None) -> web.Application:
        """The aiohttp application; `watcher_task` (a coroutine function) runs beside it."""
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        for path in GENERATION_PATHS:
            app.router.add_post(path, self.generate)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.prometheus)
        app.router.add_get("/router/config", self.show_config)

        async def lifecycle(app: web.Application) -> Any:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_UPSTREAM_CONNECTIONS),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_SECONDS),
                auto_decompress=False,  # bytes pass through as the backend sent them
            )
            self._background.append(asyncio.create_task(self._poll_queues()))
            if watcher_task is not None:
                self._background.append(asyncio.create_task(watcher_task()))
            yield
            for task in [*self._background, *self._shadow_tasks]:
                task.cancel()
            await asyncio.gather(*self._background, *self._shadow_tasks, return_exceptions=True)
            await self._session.close()

        app.cleanup_ctx.append(lifecycle)
        return app

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "the router's app is not running"
        return self._session

    async def _poll_queues(self) -> None:
        while True:
            if any(
                r.backend == LOCAL and r.max_waiting_requests is not None
                for r in self.config.routing.routes
            ):
                await self.queue.poll_once(self.session)
                for release in self.config.releases:
                    waiting = self.queue.waiting(release.id)
                    if waiting is not None:
                        self.metrics.release_waiting.labels(release.id).set(waiting)
            await asyncio.sleep(self.config.queue_poll_seconds)

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def prometheus(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def show_config(self, request: web.Request) -> web.Response:
        document = self.config.model_dump(mode="json")
        document["last_reload_error"] = self.last_reload_error
        return web.json_response(document)

    async def models(self, request: web.Request) -> web.Response:
        names = [self.config.model]
        for route in self.config.routing.routes:
            names += [name for name in route.match.models if name not in names]
        data = [{"id": name, "object": "model", "owned_by": "llm-rollout"} for name in names]
        return web.json_response({"object": "list", "data": data})

    # ----------------------------------------------------------------- one request

    async def generate(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions, /v1/completions, /v1/embeddings."""
        started = time.monotonic()
        request_id = request.headers.get("X-Request-ID") or f"router-{uuid.uuid4().hex}"
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(400, "the request body is not a JSON object", request_id)
        config = self.config
        model = body.get("model") if isinstance(body.get("model"), str) else None
        task = request.headers.get(config.routing.task_header)
        route = config.routing.route_for(model, task)
        if route is None:
            self.metrics.requests.labels("none", "none", "no_route").inc()
            task_part = f" and {config.routing.task_header} '{task}'" if task else ""
            return _error(404, f"no route takes model '{model}'{task_part}", request_id)
        call = Call(request, body, route, request_id, started, bool(body.get("stream")))
        if route.backend != LOCAL:
            try:
                opened = await self._open_cloud(call, route.backend)
            except UpstreamFailure as failure:
                return self._failed(call, route.backend, failure)
            return await self._relay(call, opened, route.backend, cloud=True)
        return await self._local_first(call, config)

    async def _local_first(self, call: Call, config: RouterConfig) -> web.StreamResponse:
        route = call.route
        release = self.picker.pick(self._session_key(call.request))
        reason = self._reason_to_skip_local(route, config, release)
        if reason is not None and route.fallback is not None:
            self.metrics.fallbacks.labels(route.name, reason).inc()
            try:
                opened = await self._open_cloud(call, route.fallback)
            except UpstreamFailure as cloud_failure:
                # the cloud is down too: the local model, degraded or busy, is still the best bet
                log.warning("fallback %s failed (%s); trying local", route.fallback, cloud_failure)
            else:
                return await self._relay(call, opened, route.fallback, cloud=True, reason=reason)
        if release is None:
            nobody = UpstreamFailure("unreachable", 503, "no local release has traffic weight")
            return self._failed(call, "none", nobody)
        self._maybe_shadow(call, config, release)
        try:
            opened, release = await self._open_local(call, config, release)
        except UpstreamFailure as local:
            if route.fallback is None or reason is not None:
                return self._failed(call, release.id, local)
            reason = f"local_{local.kind}"
            self.metrics.fallbacks.labels(route.name, reason).inc()
            try:
                opened = await self._open_cloud(call, route.fallback)
            except UpstreamFailure as cloud:
                local.message += f" (fallback '{route.fallback}' failed too: {cloud.message})"
                return self._failed(call, release.id, local)
            return await self._relay(call, opened, route.fallback, cloud=True, reason=reason)
        return await self._relay(call, opened, release.id)

    async def _open_local(
        self, call: Call, config: RouterConfig, release: Release
    ) -> tuple[Opened, Release]:
        """Open the request on `release`; when it cannot even be connected to (its Service
        has no pod left: a release just scaled to zero while this router still reads the
        previous weights), on the other releases with weight, heaviest first — the request
        never reached the first one, so sending it elsewhere repeats nothing."""
        route = call.route
        tried: list[Release] = []
        while True:
            try:
                opened = await self._open(
                    call,
                    f"{release.url}{call.request.path}",
                    config.model,
                    self._local_headers(call),
                    route.first_token_timeout_seconds
                    if call.stream
                    else route.request_timeout_seconds,
                    route.request_timeout_seconds,
                )
                return opened, release
            except UpstreamFailure as failure:
                tried.append(release)
                others = [r for r in self.picker.releases if r not in tried]
                if not failure.never_connected or not others:
                    raise
                log.info("%s refused the connection; trying another release", release.id)
                self.metrics.release_retries.labels(route.name, release.id).inc()
                release = max(others, key=lambda r: r.weight)

    def _reason_to_skip_local(
        self, route: Route, config: RouterConfig, release: Release | None
    ) -> str | None:
        """Why this request should go to the fallback without trying local, if it should
        (only acted on when the route has a fallback, which a local_only route never has)."""
        if release is None:
            return "no_release"
        if config.degraded:
            return "degraded"
        if route.max_waiting_requests is not None:
            waiting = self.queue.waiting(release.id)
            if waiting is not None and waiting > route.max_waiting_requests:
                return "queue_full"
        return None

    def _session_key(self, request: web.Request) -> str | None:
        for header in self.config.routing.session_headers:
            value = request.headers.get(header)
            if value:
                return value
        return None

    def _local_headers(self, call: Call) -> dict[str, str]:
        routing = self.config.routing
        headers = {"Content-Type": "application/json", "X-Request-ID": call.request_id}
        # a per-release vllm-router (consistent_hash) keeps a session on one pod with these
        for name in [*routing.session_headers, routing.task_header, "Authorization"]:
            value = call.request.headers.get(name)
            if value:
                headers[name] = value
        return headers

    async def _open_cloud(self, call: Call, name: str) -> Opened:
        cloud = self.config.routing.cloud[name]
        headers = {"Content-Type": "application/json", "X-Request-ID": call.request_id}
        key = cloud_api_key(name)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        path = call.request.path.removeprefix("/v1")
        return await self._open(
            call,
            f"{cloud.base_url}{path}",
            cloud.model,
            headers,
            cloud.timeout_seconds,
            cloud.timeout_seconds,
        )

    async def _open(
        self,
        call: Call,
        url: str,
        model: str,
        headers: dict[str, str],
        first_timeout: float,
        total_timeout: float,
    ) -> Opened:
        """Send the request and wait for its first bytes; `UpstreamFailure` when none come."""
        data = json.dumps({**call.body, "model": model}).encode()
        timeout = aiohttp.ClientTimeout(total=total_timeout, sock_connect=CONNECT_TIMEOUT_SECONDS)
        deadline = asyncio.get_running_loop().time() + first_timeout

        def left() -> float:
            return max(0.0, deadline - asyncio.get_running_loop().time())

        try:
            response = await asyncio.wait_for(
                self.session.post(url, data=data, headers=headers, timeout=timeout), left()
            )
        except TimeoutError as error:
            raise UpstreamFailure(
                "timeout", 504, f"{url} sent no answer within {first_timeout:g} s"
            ) from error
        except aiohttp.ClientConnectorError as error:
            raise UpstreamFailure(
                "unreachable", 502, f"{url} unreachable: {error}", never_connected=True
            ) from error
        except aiohttp.ClientError as error:
            raise UpstreamFailure("unreachable", 502, f"{url} unreachable: {error}") from error
        try:
            if response.status >= 500:
                body = await asyncio.wait_for(response.content.read(MAX_ERROR_BODY_BYTES), left())
                raise UpstreamFailure(
                    "error", response.status, f"{url} answered {response.status}", body
                )
            if call.stream and response.status == 200:
                first = await asyncio.wait_for(response.content.readany(), left())
                if not first:
                    raise UpstreamFailure("error", 502, f"{url} ended the stream before any token")
            else:
                first = await asyncio.wait_for(response.read(), left())
        except TimeoutError as error:
            response.close()
            what = "first token" if call.stream else "answer"
            raise UpstreamFailure(
                "timeout", 504, f"{url} sent no {what} within {first_timeout:g} s"
            ) from error
        except aiohttp.ClientError as error:
            response.close()
            raise UpstreamFailure("error", 502, f"{url} broke off its answer: {error}") from error
        except (UpstreamFailure, asyncio.CancelledError):
            response.close()  # the client left or the answer is refused: free the connection
            raise
        return Opened(response, first)

    async def _relay(
        self,
        call: Call,
        opened: Opened,
        backend: str,
        *,
        cloud: bool = False,
        reason: str | None = None,
    ) -> web.StreamResponse:
        """Send the backend's answer on to the client, unchanged."""
        upstream = opened.response
        headers = self._answer_headers(call, backend, reason)
        headers["Content-Type"] = upstream.headers.get("Content-Type", "application/json")
        labels = (call.route.name, backend)
        scanner = UsageScanner() if cloud else None
        if not (call.stream and upstream.status == 200):
            upstream.release()
            if scanner is not None:
                scanner.feed_whole(opened.first)
                self._count_usage(backend, scanner)
            outcome = "ok" if upstream.status < 400 else "client_error"
            self.metrics.requests.labels(*labels, outcome).inc()
            self.metrics.duration.labels(*labels).observe(time.monotonic() - call.started)
            return web.Response(status=upstream.status, body=opened.first, headers=headers)
        answer = web.StreamResponse(status=200, headers=headers)
        outcome = "ok"
        try:
            await answer.prepare(call.request)
            await answer.write(opened.first)
            self.metrics.time_to_first_token.labels(*labels).observe(
                time.monotonic() - call.started
            )
            if scanner is not None:
                scanner.feed(opened.first)
            tail = opened.first[-len(STREAM_END) - 8 :]
            while True:
                try:
                    chunk = await upstream.content.readany()
                except (aiohttp.ClientError, TimeoutError) as error:
                    # tokens were sent: never retried; the client gets an error, not a cut answer
                    outcome = "stream_broken"
                    log.warning("%s broke a stream (%s): %s", backend, call.request_id, error)
                    await answer.write(_stream_error(backend, error))
                    break
                if not chunk:
                    if not tail.rstrip().endswith(STREAM_END):
                        # the connection ended early but cleanly enough for aiohttp to see EOF
                        outcome = "stream_broken"
                        log.warning("%s ended a stream early (%s)", backend, call.request_id)
                        await answer.write(_stream_error(backend, ConnectionError("no [DONE]")))
                    break
                tail = (tail + chunk)[-len(STREAM_END) - 8 :]
                await answer.write(chunk)
                if scanner is not None:
                    scanner.feed(chunk)
            await answer.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            outcome = "client_gone"
            raise
        finally:
            if outcome == "ok":
                upstream.release()  # read to the end: the connection goes back to the pool
            else:
                upstream.close()  # closing the connection is how vLLM learns to abort
            self.metrics.requests.labels(*labels, outcome).inc()
            self.metrics.duration.labels(*labels).observe(time.monotonic() - call.started)
            if scanner is not None:
                self._count_usage(backend, scanner)
        return answer

    def _answer_headers(self, call: Call, backend: str, reason: str | None) -> dict[str, str]:
        headers = {
            "X-Request-ID": call.request_id,
            "X-Router-Route": call.route.name,
            "X-Router-Backend": backend,
        }
        if reason is not None:
            headers["X-Router-Fallback"] = reason
        return headers

    def _failed(self, call: Call, backend: str, failure: UpstreamFailure) -> web.Response:
        """Nothing answered: the client gets the failure (503 with the reason when local-only)."""
        route = call.route
        if route.local_only:
            self.metrics.requests.labels(route.name, backend, "unavailable").inc()
            message = (
                f"the local model is unavailable and route '{route.name}' is local_only "
                f"(its requests never leave the cluster): {failure.message}"
            )
            return _error(503, message, call.request_id, "local_only_unavailable")
        self.metrics.requests.labels(route.name, backend, "error").inc()
        if failure.body and failure.status >= 500:
            headers = self._answer_headers(call, backend, None)
            headers["Content-Type"] = "application/json"
            return web.Response(status=failure.status, body=failure.body, headers=headers)
        return _error(failure.status, failure.message, call.request_id, f"upstream_{failure.kind}")

    def _count_usage(self, backend: str, scanner: UsageScanner) -> None:
        if scanner.prompt_tokens:
            self.metrics.cloud_tokens.labels(backend, "prompt").inc(scanner.prompt_tokens)
        if scanner.completion_tokens:
            self.metrics.cloud_tokens.labels(backend, "completion").inc(scanner.completion_tokens)

    # ----------------------------------------------------------------- shadow copies

    def _maybe_shadow(self, call: Call, config: RouterConfig, chosen: Release) -> None:
        if config.shadow is None or self.shadow_sampler is None:
            return
        if chosen.id == config.shadow.release or not self.shadow_sampler.take():
            return
        release = next(r for r in config.releases if r.id == config.shadow.release)
        if len(self._shadow_tasks) >= MAX_SHADOW_IN_FLIGHT:
            self.metrics.shadow_requests.labels(release.id, "skipped").inc()
            return
        task = asyncio.create_task(self._shadow(call, config.model, release))
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(self, call: Call, model: str, release: Release) -> None:
        """Send a copy to the shadow release and read its whole answer into nowhere."""
        headers = self._local_headers(call)
        headers["X-Request-ID"] = f"{call.request_id}-shadow"
        data = json.dumps({**call.body, "model": model}).encode()
        timeout = aiohttp.ClientTimeout(total=call.route.request_timeout_seconds)
        outcome = "error"
        try:
            async with self.session.post(
                f"{release.url}{call.request.path}", data=data, headers=headers, timeout=timeout
            ) as response:
                async for _ in response.content.iter_any():
                    pass
                outcome = "ok" if response.status < 400 else "error"
        except (aiohttp.ClientError, TimeoutError) as error:
            log.info("shadow copy to %s failed: %s", release.id, error)
        finally:
            self.metrics.shadow_requests.labels(release.id, outcome).inc()


def _error(status: int, message: str, request_id: str, code: str = "router_error") -> web.Response:
    """An error in the OpenAI API's shape, which the official clients raise with the message."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status, headers={"X-Request-ID": request_id})


def _stream_error(backend: str, error: BaseException) -> bytes:
    """The SSE event vLLM itself sends when a stream fails; OpenAI clients raise on it."""
    message = f"the answer from '{backend}' broke off mid-stream: {error or type(error).__name__}"
    payload = {"error": {"message": message, "type": "server_error", "code": 502}}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _summary(config: RouterConfig) -> str:
    releases = ", ".join(f"{r.id}={r.weight:g}" for r in config.releases) or "none"
    degraded = f", degraded: {config.degraded}" if config.degraded else ""
    return f"releases {releases}{degraded}"
