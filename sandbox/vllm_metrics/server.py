"""An HTTP server that looks like a vLLM pod to Prometheus: /metrics, /health, /v1/models;
and to a router: /v1/chat/completions and /v1/completions answered at once (whole or as an SSE
stream) with a text naming the server's address, so a test sees which pod answered.

Like vLLM, it refuses /v1/* without `Authorization: Bearer <key>` when started with an API key
(VLLM_API_KEY in its pod, from the model's Secret); and like vLLM it returns token ids and
log-probabilities when asked (`return_token_ids`, `logprobs`, `prompt_logprobs`), one token
per UTF-8 byte of the text, so the quality gate can measure its answers.

The behaviour can be changed while it runs (`set_behaviour`, or `POST /_scenario` with
`{"scenario": "slow_decoding", "latency_scale": 1.3}` from another process).
"""

from __future__ import annotations

import json
import os
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
        api_key: str | None = None,
    ) -> None:
        self.families = create_families(model_name, max_model_len)
        # vLLM reads VLLM_API_KEY (vllm/envs.py) when no --api-key is given
        self.api_key = api_key if api_key is not None else os.environ.get("VLLM_API_KEY") or None
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

    def _refused(self) -> bool:
        """vLLM's AuthenticationMiddleware (entrypoints/serve/middleware/authenticate.py):
        /v1/… needs the bearer key; /health and /metrics stay open."""
        key = self.emulator.api_key
        if not key or not self.path.startswith("/v1"):
            return False
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and token == key:
            return False
        self._send(401, b'{"error":"Unauthorized"}', "application/json")
        return True

    def do_GET(self) -> None:
        if self.emulator.is_dead():
            # A dead pod answers nothing: drop the connection like a killed process would.
            self.close_connection = True
            self.connection.close()
            return
        if self._refused():
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
        if self._refused():
            return
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
            choice: dict[str, Any] = (
                {"index": 0, "message": {"role": "assistant", "content": text}}
                if chat
                else {"index": 0, "text": text, "logprobs": None}
            )
            prompt_ids = _prompt_ids(body)
            output_ids = list(text.encode())
            extra: dict[str, Any] = {}
            if body.get("return_token_ids"):
                extra["prompt_token_ids"] = prompt_ids
                choice["token_ids"] = output_ids
            if chat and body.get("logprobs"):
                choice["logprobs"] = {"content": [_logprob(t) for t in output_ids]}
            if body.get("prompt_logprobs") is not None:
                # the first prompt token has no log-probability (vLLM answers None)
                rows = [{str(t): _logprob(t)} for t in prompt_ids[1:]]
                choice["prompt_logprobs"] = [None, *rows]
            usage = {
                "prompt_tokens": len(prompt_ids),
                "completion_tokens": len(output_ids),
                "total_tokens": len(prompt_ids) + len(output_ids),
            }
            choices = [{**choice, "finish_reason": "stop"}]
            self._json({**base, **extra, "choices": choices, "usage": usage})
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


def _prompt_ids(body: dict[str, Any]) -> list[int]:
    """The request's prompt as token ids: a completion's own ids, else one per UTF-8 byte of
    the prompt or the messages' contents."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
        return list(prompt)
    if isinstance(prompt, str):
        return list(prompt.encode())
    messages = body.get("messages") or []
    text = "\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages)
    return list(text.encode())


def _logprob(token: int) -> dict[str, Any]:
    """A fixed log-probability for a token, in vLLM's shape."""
    return {"token": chr(token), "logprob": -0.5, "bytes": [token], "top_logprobs": []}
