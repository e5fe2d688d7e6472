"""The sandbox Hub's HTTP API: the part `huggingface_hub` uses to resolve, list and download.

Routes (as on huggingface.co):
  GET  /api/models/{repo}                         model info at the default branch
  GET  /api/models/{repo}/revision/{rev}          model info at a revision, with siblings
  GET  /api/models/{repo}/tree/{rev}[/{path}]     tree listing with sizes, git ids, LFS sha256
  GET  /api/models/{repo}/refs                    branches and tags
  HEAD/GET /{repo}/resolve/{rev}/{path}           file bytes, Range requests, X-Repo-Commit…
Control routes for a sandbox in another process:
  POST   /_sandbox/faults                         JSON body: a Fault's fields
  DELETE /_sandbox/faults                         clear every fault
  POST   /_sandbox/branches                       JSON {repo, branch, commit}: move a branch
"""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

from sandbox.httpserver import BackgroundServer
from sandbox.hub.faults import Fault, FaultBook, Route
from sandbox.hub.store import Commit, Repo, RepoFileInfo, RepoStore, folders_of

CHUNK = 1 << 20
HUB_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.000Z"  # what the Hub sends and huggingface_hub parses


class HubError(Exception):
    """An error answer, with the X-Error-Code huggingface_hub turns into its exception types."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class HubHandler(BaseHTTPRequestHandler):
    """Answers one request against the server's `RepoStore` and `FaultBook`."""

    protocol_version = "HTTP/1.1"
    store: ClassVar[RepoStore]
    faults: ClassVar[FaultBook]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; the weights pipeline logs what it fetches

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_POST(self) -> None:
        self._control("POST")

    def do_DELETE(self) -> None:
        self._control("DELETE")

    # -- routing ---------------------------------------------------------------------------

    def _dispatch(self, *, head: bool) -> None:
        url = urlsplit(self.path)
        parts = [unquote(part) for part in url.path.split("/") if part]
        query = parse_qs(url.query)
        try:
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                self._api(parts[2:], query)
            elif len(parts) >= 5 and parts[2] == "resolve":
                self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head)
            else:
                raise HubError(404, None, f"no route for {url.path}")
        except HubError as error:
            self._send_json({"error": error.message}, error.status, error.code)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _api(self, parts: list[str], query: dict[str, list[str]]) -> None:
        repo_id, rest = f"{parts[0]}/{parts[1]}", parts[2:]
        path = "/".join(rest[2:]) if rest[:1] == ["tree"] else None
        self._apply_faults("api", repo_id, path)
        repo = self._repo(repo_id)
        if not rest:
            self._send_json(_model_info(repo, self._commit(repo, "main")))
        elif rest[0] == "revision" and len(rest) == 2:
            self._send_json(_model_info(repo, self._commit(repo, rest[1])))
        elif rest[0] == "tree" and len(rest) >= 2:
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            self._send_json(_tree(self._commit(repo, rest[1]), path or "", recursive))
        elif rest == ["refs"]:
            self._send_json(_refs(repo))
        else:
            raise HubError(404, None, f"no API route /{'/'.join(rest)}")

    def _resolve(self, repo_id: str, revision: str, path: str, head: bool) -> None:
        faults = self._apply_faults("resolve", repo_id, path)
        repo = self._repo(repo_id)
        commit = self._commit(repo, revision)
        info = commit.files.get(path)
        if info is None:
            raise HubError(404, "EntryNotFound", f"{path} not found at {commit.oid}")
        start, end = self._range(info.size)
        for fault in faults:
            if fault.kind == "truncate":
                end = min(end, max(start, fault.offset))
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{info.etag}"',
            "X-Repo-Commit": commit.oid,
            "Content-Length": str(end - start),
        }
        if info.lfs:
            headers["X-Linked-Etag"] = f'"{info.sha256}"'
            headers["X-Linked-Size"] = str(info.size)
        status = 200
        truncated = any(f.kind == "truncate" for f in faults)
        if (start, end) != (0, info.size) and not truncated:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self._stream(info, start, end, faults)

    def _stream(self, info: RepoFileInfo, start: int, end: int, faults: list[Fault]) -> None:
        corrupt = {f.offset for f in faults if f.kind == "corrupt"}
        cut_at = min((f.offset for f in faults if f.kind == "cut"), default=None)
        position = start
        with info.blob_path.open("rb") as handle:
            if not corrupt and cut_at is None:
                # zero-copy, like a CDN: the sandbox should not be the bottleneck it measures
                self.wfile.flush()
                self.connection.sendfile(handle, offset=start, count=end - start)
                return
            handle.seek(start)
            while position < end:
                chunk = bytearray(handle.read(min(CHUNK, end - position)))
                for offset in corrupt:
                    if position <= offset < position + len(chunk):
                        chunk[offset - position] ^= 0xFF
                if cut_at is not None and position + len(chunk) > cut_at:
                    self.wfile.write(chunk[: max(0, cut_at - position)])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(chunk)
                position += len(chunk)

    # -- pieces ----------------------------------------------------------------------------

    def _apply_faults(self, route: Route, repo: str | None, path: str | None) -> list[Fault]:
        faults = self.faults.take(lambda fault: fault.matches(route, repo, path))
        for fault in faults:
            if fault.kind == "slow":
                time.sleep(fault.delay_seconds)
        for fault in faults:
            if fault.kind == "status":
                code = {401: "GatedRepo", 404: "RepoNotFound"}.get(fault.status)
                raise HubError(fault.status, code, f"injected {fault.status}")
        return faults

    def _repo(self, repo_id: str) -> Repo:
        repo = self.store.get(repo_id)
        if repo is None:
            raise HubError(404, "RepoNotFound", f"Repository {repo_id} not found")
        if repo.gated_token is not None:
            sent = self.headers.get("Authorization", "")
            if sent != f"Bearer {repo.gated_token}":
                raise HubError(401, "GatedRepo", f"Access to {repo_id} is restricted")
        return repo

    @staticmethod
    def _commit(repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def _range(self, size: int) -> tuple[int, int]:
        header = self.headers.get("Range")
        if not header or not header.startswith("bytes="):
            return 0, size
        first, _, last = header.removeprefix("bytes=").split(",")[0].partition("-")
        if not first:  # suffix range: the last N bytes
            return max(0, size - int(last)), size
        start, end = int(first), (int(last) + 1 if last else size)
        if start >= size:
            raise HubError(416, None, f"range {header} outside {size} bytes")
        return start, min(end, size)

    def _send_json(self, body: Any, status: int = 200, error_code: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if error_code:
            self.send_header("X-Error-Code", error_code)
        if status >= 400:
            self.send_header("X-Error-Message", str(body.get("error", "")))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _control(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        route = urlsplit(self.path).path
        if route == "/_sandbox/faults" and method == "POST":
            self.faults.add(Fault(**body))
        elif route == "/_sandbox/faults" and method == "DELETE":
            self.faults.clear()
        elif route == "/_sandbox/branches" and method == "POST":
            self.store.move_branch(body["repo"], body["branch"], body["commit"])
        else:
            self._send_json({"error": f"no control route {method} {route}"}, 404)
            return
        self._send_json({"ok": True})


def _model_info(repo: Repo, commit: Commit) -> dict[str, Any]:
    return {
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": repo.repo_id.split("/")[0],
        "sha": commit.oid,
        "lastModified": datetime.fromtimestamp(commit.timestamp, UTC).strftime(HUB_TIME_FORMAT),
        "private": False,
        "gated": "manual" if repo.gated_token else False,
        "disabled": False,
        "tags": ["safetensors", "llama", "text-generation"],
        "pipeline_tag": "text-generation",
        "library_name": "transformers",
        "siblings": [_sibling(info) for info in commit.files.values()],
    }


def _sibling(info: RepoFileInfo) -> dict[str, Any]:
    sibling: dict[str, Any] = {"rfilename": info.path, "size": info.size, "blobId": info.git_oid}
    if info.lfs:
        sibling["lfs"] = {
            "sha256": info.sha256,
            "size": info.size,
            "pointerSize": info.pointer_size,
        }
    return sibling


def _tree(commit: Commit, folder: str, recursive: bool) -> list[dict[str, Any]]:
    prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
    folders = folders_of(commit.files)
    if prefix and prefix.rstrip("/") not in folders:
        raise HubError(404, "EntryNotFound", f"{folder} not found at {commit.oid}")

    def inside(path: str) -> bool:
        rest = path[len(prefix) :]
        return path.startswith(prefix) and bool(rest) and (recursive or "/" not in rest)

    entries: list[dict[str, Any]] = [
        {"type": "directory", "oid": oid, "size": 0, "path": path}
        for path, oid in sorted(folders.items())
        if path and inside(path)
    ]
    for info in sorted(commit.files.values(), key=lambda i: i.path):
        if inside(info.path):
            entry: dict[str, Any] = {
                "type": "file",
                "oid": info.git_oid,
                "size": info.size,
                "path": info.path,
            }
            if info.lfs:
                entry["lfs"] = {
                    "oid": info.sha256,
                    "size": info.size,
                    "pointerSize": info.pointer_size,
                }
            entries.append(entry)
    return entries


def _refs(repo: Repo) -> dict[str, Any]:
    def ref(kind: str, name: str, oid: str) -> dict[str, str]:
        return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid}

    return {
        "branches": [ref("heads", name, oid) for name, oid in sorted(repo.branches.items())],
        "tags": [ref("tags", name, oid) for name, oid in sorted(repo.tags.items())],
        "converts": [],
    }


class HubServer(BackgroundServer):
    """The sandbox Hub on a free local port; point `HF_ENDPOINT` at `url`."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = RepoStore(root)
        self.faults = FaultBook()
        handler = type(
            "BoundHubHandler", (HubHandler,), {"store": self.store, "faults": self.faults}
        )
        super().__init__(handler, host, port)

    def inject(self, fault: Fault) -> None:
        """Make matching requests misbehave (see `Fault`)."""
        self.faults.add(fault)

    def clear_faults(self) -> None:
        """Behave again."""
        self.faults.clear()
