"""A Service stand-in: a TCP proxy on the Service's cluster IP and port that forwards each
connection to the next ready pod its selector matches (round robin), so a load generator can
hit "the Service" while pods come and go."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Callable

Backends = Callable[[], list[tuple[str, int]]]
CONNECT_TIMEOUT_SECONDS = 5.0


class ServiceProxy:
    """Listens on (ip, port); `backends()` names the ready pod endpoints at each connection."""

    def __init__(self, ip: str, port: int, backends: Backends) -> None:
        self.ip, self.port, self.backends = ip, port, backends
        self._turn = itertools.count()
        self._listener = socket.create_server((ip, port), reuse_port=False)
        self._listener.settimeout(0.5)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name=f"svc-{ip}:{port}")
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        endpoints = self.backends()
        if not endpoints:
            client.close()  # no ready pod: the connection is refused, as with kube-proxy
            return
        host, port = endpoints[next(self._turn) % len(endpoints)]
        try:
            upstream = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_SECONDS)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
        _pipe(upstream, client)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()
