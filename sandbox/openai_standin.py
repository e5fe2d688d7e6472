"""A stand-in OpenAI-compatible server that records what it received: the router's tests use
it as a "cloud" API and as a local release whose faults can be switched on.

It answers `/v1/chat/completions`, `/v1/completions` (streamed as SSE or whole),
`/v1/embeddings` and `/v1/models` in the shapes vLLM's OpenAI server and the OpenAI API use
(vllm/entrypoints/openai/protocol.py: ChatCompletionStreamResponse, CompletionStreamResponse),
and `/metrics` with vLLM's own families (sandbox.vllm_metrics), `vllm:num_requests_waiting`
set by the test. Streams use chunked transfer encoding like vLLM behind uvicorn, so a server
that dies mid-stream ends the body without its last chunk, which clients see as an error,
not as a short answer. Faults are fields of `Faults`, changed while it runs.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sandbox.httpserver import BackgroundServer
from sandbox.vllm_metrics.families import create_families

LISTEN_BACKLOG = 2048


@dataclass
class Faults:
    """What the stand-in does wrong (the defaults: nothing)."""

    status: int = 200  # answer every generation request with this status (500: a broken pod)
    first_token_delay: float = 0.0  # seconds before the first byte of an answer
    token_delay: float = 0.0  # seconds between streamed tokens
    # drop the connection after this many streamed tokens (one token_delay after the last)
    die_after_tokens: int | None = None
    # answer with a proxy's HTML page instead of the server's JSON (an ingress or gateway
    # in front of the pod), with `status`
    html: bool = False


@dataclass
class Received:
    """One generation request as the stand-in saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    finished: bool = False  # the whole answer was written
    client_gone: bool = False  # the client closed the connection before the end


@dataclass
class StandinState:
    """What the server answers with and what it has received (guarded by `lock`)."""

    name: str
    tokens: int
    faults: Faults = field(default_factory=Faults)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class OpenAIStandin(BackgroundServer):
    """One stand-in server on a free local port; `name` appears in every answer."""

    def __init__(
        self,
        name: str,
        *,
        model: str = "tiny-llama",
        tokens: int = 4,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.state = StandinState(name, tokens)
        self.model = model
        self.families = create_families(model, 256)
        handler = type("BoundStandinHandler", (StandinHandler,), {"standin": self})
        super().__init__(handler, host, port)
        # socketserver listens with a backlog of 5: a burst of connections would wait for SYN
        # retransmits (1 s, 3 s). vLLM's uvicorn listens with 2048 (uvicorn Config.backlog).
        self.httpd.socket.listen(LISTEN_BACKLOG)

    @property
    def faults(self) -> Faults:
        return self.state.faults

    def set_waiting(self, waiting: int) -> None:
        """What `/metrics` reports as vLLM's waiting requests."""
        self.families.waiting.labels(model_name=self.model, engine="0").set(waiting)

    def received(self) -> list[Received]:
        """A copy of the generation requests received so far."""
        with self.state.lock:
            return list(self.state.received)

    def answer_text(self) -> str:
        """The content of every answer: one token per word."""
        return " ".join(f"{self.state.name}-{i}" for i in range(self.state.tokens))


class StandinHandler(BaseHTTPRequestHandler):
    """Serves one stand-in."""

    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: with Nagle's algorithm on, the body waits
    # for the client's delayed ACK (40 ms a request), which uvicorn (vLLM's server) avoids
    disable_nagle_algorithm = True
    standin: ClassVar[OpenAIStandin]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/metrics":
            self._send(200, generate_latest(self.standin.families.registry), CONTENT_TYPE_LATEST)
        elif self.path == "/health":
            self._send(200, b"", "text/plain")
        elif self.path == "/v1/models":
            model = {"id": self.standin.model, "object": "model", "owned_by": "standin"}
            self._json(200, {"object": "list", "data": [model]})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path not in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            self._json(404, {"detail": "Not Found"})
            return
        record = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        state = self.standin.state
        with state.lock:
            state.received.append(record)
            faults = Faults(**vars(state.faults))
        if faults.first_token_delay:
            time.sleep(faults.first_token_delay)
        if faults.html:
            page = f"<html><body><h1>{faults.status} from the gateway</h1></body></html>"
            self._send(faults.status, page.encode(), "text/html")
            record.finished = True
        elif faults.status >= 400:
            error = {"message": f"{state.name} failed", "type": "InternalServerError"}
            self._json(faults.status, {"error": {**error, "code": faults.status}})
            record.finished = True
        elif self.path == "/v1/embeddings":
            self._json(200, self._embedding(body))
            record.finished = True
        elif body.get("stream"):
            record.finished = self._stream(body, faults, record)
        else:
            self._json(200, self._whole_answer(body))
            record.finished = True

    def _whole_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        text = self.standin.answer_text()
        usage = {"prompt_tokens": 3, "completion_tokens": self.standin.state.tokens}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if self.path == "/v1/chat/completions":
            message = {"role": "assistant", "content": text}
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
            kind = "text_completion"
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": body.get("model", self.standin.model),
            "choices": [choice],
            "usage": usage,
        }

    def _embedding(self, body: dict[str, Any]) -> dict[str, Any]:
        vector = [0.25, -0.5, 0.125]
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "model": body.get("model", self.standin.model),
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        }

    def _stream(self, body: dict[str, Any], faults: Faults, record: Received) -> bool:
        """Answer as SSE; True when the whole stream was written."""
        chat = self.path == "/v1/chat/completions"
        base = {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": body.get("model", self.standin.model),
        }
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        words = self.standin.answer_text().split(" ")
        try:
            if chat:
                role = {"index": 0, "delta": {"role": "assistant", "content": ""}}
                self._event({**base, "choices": [{**role, "finish_reason": None}]})
            for index, word in enumerate(words):
                if index and faults.token_delay:
                    time.sleep(faults.token_delay)
                if faults.die_after_tokens is not None and index >= faults.die_after_tokens:
                    # a killed process: no terminating chunk, the connection just ends
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return False
                token = word if index == 0 else f" {word}"
                piece = {"delta": {"content": token}} if chat else {"text": token}
                self._event({**base, "choices": [{"index": 0, **piece, "finish_reason": None}]})
            end = {"delta": {}} if chat else {"text": ""}
            self._event({**base, "choices": [{"index": 0, **end, "finish_reason": "stop"}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": 3, "completion_tokens": len(words)}
                usage["total_tokens"] = 3 + len(words)
                self._event({**base, "choices": [], "usage": usage})
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")
            return True
        except (BrokenPipeError, ConnectionResetError):
            record.client_gone = True
            self.close_connection = True
            return False

    def _event(self, payload: dict[str, Any]) -> None:
        self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, body: object) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
