"""Running the router: in the foreground (the CLI, the router's pods) or in a background
thread (tests, the demo), always from a config file it watches for changes."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Self

from aiohttp import web

from llm_rollout.router.config import RELOAD_INTERVAL_SECONDS, ConfigWatcher
from llm_rollout.router.proxy import Router

log = logging.getLogger(__name__)

ROUTER = web.AppKey("router", Router)

# Connections the kernel queues before the router accepts them: aiohttp's default is 128, a
# front door takes bursts (uvicorn, vLLM's server, uses 2048).
LISTEN_BACKLOG = 2048
# Enough for streams that finish their last tokens, short of a Pod's default 30 s grace period.
SHUTDOWN_TIMEOUT_SECONDS = 20.0


def build(config_path: Path, reload_interval: float = RELOAD_INTERVAL_SECONDS) -> web.Application:
    """The router for a config file (`RouterConfigError` when the file is not a valid config)."""
    config, data = ConfigWatcher.start_from(config_path)
    router = Router(config)
    watcher = ConfigWatcher(
        config_path, data, router.reloaded, router.reload_failed, reload_interval
    )
    app = router.app(watcher.run)
    app[ROUTER] = router
    return app


def serve(config_path: Path, host: str, port: int) -> None:
    """Serve until interrupted. Client disconnects cancel their upstream request."""
    app = build(config_path)
    web.run_app(
        app,
        host=host,
        port=port,
        handler_cancellation=True,
        backlog=LISTEN_BACKLOG,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        print=lambda message: log.info("%s", message),
    )


class RouterThread:
    """A router on a free local port in a daemon thread; `with RouterThread(path) as r:`."""

    def __init__(
        self,
        config_path: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        reload_interval: float = RELOAD_INTERVAL_SECONDS,
    ) -> None:
        self.app = build(config_path, reload_interval)
        self.router: Router = self.app[ROUTER]
        self._host, self._port = host, port
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(self.app, handler_cancellation=True)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.url = ""

    def start(self) -> Self:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.url = future.result(timeout=30)
        return self

    async def _start(self) -> str:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, backlog=LISTEN_BACKLOG)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
