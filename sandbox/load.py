"""A steady load generator: completions sent through a Service at a fixed rate, counting what
succeeded and failed — the traffic a gate judges, and the proof that serving never stopped."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field

REQUEST_TIMEOUT_SECONDS = 60  # a CPU vLLM under load answers in seconds, not minutes


@dataclass
class LoadCounts:
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class LoadGenerator:
    """Sends `rate` completions per second (one worker per in-flight request) to `url`."""

    def __init__(
        self,
        url: str,
        model: str,
        rate: float = 2.0,
        workers: int = 2,
        max_tokens: int = 8,
        chat: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.chat = chat  # /v1/chat/completions (through the model's chat template)
        self.interval = workers / rate
        self.max_tokens = max_tokens
        self.counts = LoadCounts()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            for i in range(workers)
        ]

    def start(self) -> LoadGenerator:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadCounts:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT_SECONDS + 5)
        return self.counts

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def send(self) -> None:
        """One completion; counted as ok or failed (with the error kept)."""
        body: dict[str, object] = {"model": self.model, "max_tokens": self.max_tokens}
        if self.chat:
            body["messages"] = [{"role": "user", "content": "how does the canary sing?"}]
        else:
            body["prompt"] = "the canary sings"
        path = "/v1/chat/completions" if self.chat else "/v1/completions"
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
                response.read()
        except (urllib.error.URLError, OSError) as error:
            with self._lock:
                self.counts.failed += 1
                self.counts.errors.append(str(error)[:200])
        else:
            with self._lock:
                self.counts.ok += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.send()
            self._stop.wait(self.interval)
