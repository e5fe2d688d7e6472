"""An HTTP server that looks like a vLLM pod to Prometheus: /metrics, /health, /v1/models;
and to a router: /v1/chat/completions and /v1/completions answered at once (whole or as an SSE
stream) with a text naming the server's address, so a test sees which pod answered.

The behaviour can be changed while it runs (`set_behaviour`, or `POST /_scenario` with
`{"scenario": "slow_decoding", "latency_scale": 1.3}` from another process).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import asdict, replace
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sandbox.httpserver import BackgroundServer
from sandbox.vllm_metrics.behaviour import SCENARIOS, Behaviour, TrafficSimulator
from sandbox.vllm_metrics.families import create_families

STEP_SECONDS = 0.1  # simulation resolution; well under Prometheus' 1 s scrape in tests


class MetricsEmulator(BackgroundServer):
    """One emulated vLLM server on a free local port."""

    def __init__(
        self,
        scenario: str = "healthy",
        *,
        model_name: str = "tiny-llama",
        latency_scale: float = 1.0,
        max_model_len: int = 256,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.families = create_families(model_name, max_model_len)
        self.simulator = TrafficSimulator(self.families, model_name, seed)
        self.model_name = model_name
        self._lock = threading.Lock()
        self._behaviour = SCENARIOS[scenario].scaled(latency_scale)
        self._scenario = scenario
        self._started = time.monotonic()
        self._stop = threading.Event()
        handler = type("BoundMetricsHandler", (MetricsHandler,), {"emulator": self})
        super().__init__(handler, host, port)
        self._ticker = threading.Thread(target=self._run, daemon=True)

    @property
    def behaviour(self) -> Behaviour:
        with self._lock:
            return self._behaviour

    @property
    def scenario(self) -> str:
        with self._lock:
            return self._scenario

    def set_behaviour(self, scenario: str, latency_scale: float = 1.0, **overrides: Any) -> None:
        """Switch to a named scenario (optionally slowed down or with fields overridden)."""
        behaviour = replace(SCENARIOS[scenario].scaled(latency_scale), **overrides)
        with self._lock:
            self._behaviour, self._scenario = behaviour, scenario
            self._started = time.monotonic()

    def is_dead(self) -> bool:
        """A 'dying' server has stopped answering once its time is up."""
        with self._lock:
            limit = self._behaviour.dies_after_seconds
            return limit is not None and time.monotonic() - self._started >= limit

    def start(self) -> MetricsEmulator:
        super().start()
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        super().stop()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(STEP_SECONDS):
            now = time.monotonic()
            if not self.is_dead():
                self.simulator.step(self.behaviour, now - last)
            last = now


class MetricsHandler(BaseHTTPRequestHandler):
    """Serves one emulator."""

    protocol_version = "HTTP/1.1"
    emulator: ClassVar[MetricsEmulator]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.emulator.is_dead():
            # A dead pod answers nothing: drop the connection like a killed process would.
            self.close_connection = True
            self.connection.close()
            return
        if self.path == "/metrics":
            self._send(200, generate_latest(self.emulator.families.registry), CONTENT_TYPE_LATEST)
        elif self.path == "/health":
            self._send(200, b"", "text/plain")
        elif self.path == "/v1/models":
            model = {"id": self.emulator.model_name, "object": "model", "owned_by": "vllm"}
            self._json({"object": "list", "data": [model]})
        elif self.path == "/_scenario":
            self._json({"scenario": self.emulator.scenario, **asdict(self.emulator.behaviour)})
        else:
            self._send(404, b'{"detail":"Not Found"}', "application/json")

    def do_POST(self) -> None:
        if self.path in ("/v1/chat/completions", "/v1/completions"):
            self._generate()
            return
        if self.path != "/_scenario":
            self._send(404, b'{"detail":"Not Found"}', "application/json")
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        scenario = body.pop("scenario", "healthy")
        if scenario not in SCENARIOS:
            self._send(400, f"unknown scenario {scenario!r}".encode(), "text/plain")
            return
        self.emulator.set_behaviour(scenario, **body)
        self._json({"scenario": scenario})

    def _generate(self) -> None:
        """A fixed answer naming this server ("answered by 127.0.1.5:8000"), in the shapes
        of vLLM's OpenAI server (entrypoints/openai/protocol.py); streams end with [DONE]."""
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.emulator.is_dead():
            self.close_connection = True
            self.connection.close()
            return
        host, port = self.connection.getsockname()[:2]
        text = f"answered by {host}:{port}"
        chat = self.path == "/v1/chat/completions"
        base = {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": ("chat.completion" if chat else "text_completion")
            + (".chunk" if chat and body.get("stream") else ""),
            "created": int(time.time()),
            "model": body.get("model", self.emulator.model_name),
        }
        if not body.get("stream"):
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": text}}
                if chat
                else {"index": 0, "text": text, "logprobs": None}
            )
            usage = {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
            choices = [{**choice, "finish_reason": "stop"}]
            self._json({**base, "choices": choices, "usage": usage})
            return
        piece: dict[str, Any] = (
            {"delta": {"role": "assistant", "content": text}} if chat else {"text": text}
        )
        end: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
        events = [
            {**base, "choices": [{"index": 0, **piece, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, **end, "finish_reason": "stop"}]},
        ]
        payload = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
        payload += b"data: [DONE]\n\n"
        self._send(200, payload, "text/event-stream; charset=utf-8")

    def _json(self, body: object) -> None:
        self._send(200, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
