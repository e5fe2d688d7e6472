"""The sandbox Hub's HTTP API: the part `huggingface_hub` uses to resolve, list and download.

Routes (as on huggingface.co):
  GET  /api/models/{repo}                         model info at the default branch
  GET  /api/models/{repo}/revision/{rev}          model info at a revision, with siblings
  GET  /api/models/{repo}/tree/{rev}[/{path}]     tree listing with sizes, git ids, LFS sha256
  POST /api/models/{repo}/paths-info/{rev}        form `paths=…&expand=…`: those entries only
  GET  /api/models/{repo}/refs[?include_prs=1]    branches, tags (and pull requests)
  HEAD/GET /{repo}/resolve/{rev}/{path}           small files: bytes, Range, X-Repo-Commit…;
                                                  LFS files: 302 to the CDN host (below)
The CDN, a separate host (its own port, so a different origin):
  HEAD/GET /{repo}/{sha256}?path=…                LFS bytes; Range; never needs a token
Revisions: branch, tag, `refs/heads/…`, `refs/tags/…`, `refs/pr/<n>`, a full commit id or a
unique prefix of ≥ 7 hex digits. Gated repos: metadata public, files need the accepted token.
Control routes for a sandbox in another process:
  POST   /_sandbox/faults                         JSON body: a Fault's fields
  DELETE /_sandbox/faults                         clear every fault
  POST   /_sandbox/branches                       JSON {repo, branch, commit}: move a branch
  GET    /_sandbox/stats                          body bytes sent per file, tokens seen by the CDN
  DELETE /_sandbox/stats                          start counting again
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, quote, unquote, urlsplit

from sandbox.httpserver import BackgroundServer
from sandbox.hub.faults import CONTENT_FAULTS, Fault, FaultBook, Route
from sandbox.hub.store import Commit, Repo, RepoFileInfo, RepoStore, folders_of

CHUNK = 1 << 20
HUB_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.000Z"  # what the Hub sends and huggingface_hub parses


class HubError(Exception):
    """An error answer, with the X-Error-Code huggingface_hub turns into its exception types."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


class HubStats:
    """What the sandbox sent, for tests and the benchmark: body bytes per file path, and how
    many requests reached the CDN carrying an Authorization header (it must be none)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.body_bytes: dict[str, int] = defaultdict(int)
        self.file_requests: dict[str, int] = defaultdict(int)
        self.cdn_authorizations = 0

    def sent(self, path: str, count: int) -> None:
        with self._lock:
            self.body_bytes[path] += count

    def requested(self, path: str) -> None:
        with self._lock:
            self.file_requests[path] += 1

    def cdn_saw_token(self) -> None:
        with self._lock:
            self.cdn_authorizations += 1

    def reset(self) -> None:
        with self._lock:
            self.body_bytes.clear()
            self.file_requests.clear()
            self.cdn_authorizations = 0

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "body_bytes": dict(self.body_bytes),
                "file_requests": dict(self.file_requests),
                "cdn_authorizations": self.cdn_authorizations,
            }


class _FileSender(BaseHTTPRequestHandler):
    """Shared by the Hub and its CDN: answering for a file's bytes, Range and faults included."""

    protocol_version = "HTTP/1.1"
    store: ClassVar[RepoStore]
    faults: ClassVar[FaultBook]
    stats: ClassVar[HubStats]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; the weights pipeline logs what it fetches

    def _send_file(
        self,
        name: str,
        blob: Path,
        headers: dict[str, str],
        faults: list[Fault],
        head: bool,
    ) -> None:
        """Answer with the bytes of `blob` (the file `name`), honouring Range as a CDN does,
        unless a fault says otherwise."""
        size = blob.stat().st_size
        wanted = None if any(f.kind == "ignore_range" for f in faults) else self._range(size)
        start, end = wanted or (0, size)
        truncated = False
        for fault in faults:
            if fault.kind == "truncate":
                end, truncated = min(end, max(start, fault.offset)), True
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            **headers,
            "Content-Length": str(end - start),
        }
        status = 200
        if wanted is not None and not truncated:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        self.send_response(status)
        for header, value in headers.items():
            self.send_header(header, value)
        self.end_headers()
        if not head:
            self.stats.requested(name)
            self._stream(name, blob, start, end, faults)

    def _stream(self, name: str, blob: Path, start: int, end: int, faults: list[Fault]) -> None:
        corrupt = {f.offset for f in faults if f.kind == "corrupt"}
        cut_at = min((f.offset for f in faults if f.kind == "cut"), default=None)
        every = min((f.offset for f in faults if f.kind == "cut_every"), default=None)
        if every is not None:
            cut_at = min(cut_at if cut_at is not None else end, start + every)
        if end <= start:
            return  # a 0-byte answer: sendfile would refuse an empty count
        position = start
        with blob.open("rb") as handle:
            if not corrupt and cut_at is None:
                # zero-copy, like a CDN: the sandbox should not be the bottleneck it measures
                self.wfile.flush()
                sent = self.connection.sendfile(handle, offset=start, count=end - start)
                self.stats.sent(name, sent)
                return
            handle.seek(start)
            while position < end:
                chunk = bytearray(handle.read(min(CHUNK, end - position)))
                for offset in corrupt:
                    if position <= offset < position + len(chunk):
                        chunk[offset - position] ^= 0xFF
                if cut_at is not None and position + len(chunk) > cut_at:
                    self.wfile.write(chunk[: max(0, cut_at - position)])
                    self.stats.sent(name, max(0, cut_at - position))
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(chunk)
                self.stats.sent(name, len(chunk))
                position += len(chunk)

    def _range(self, size: int) -> tuple[int, int] | None:
        """The (start, end) a Range header asks for, or None for the whole file.

        As RFC 9110 §14.2 lets a server do (and as CloudFront does): a header that does not
        parse, or asks for several ranges, is ignored (200, whole file); a range that starts
        past the end is unsatisfiable: 416 with `Content-Range: bytes */<size>`, which is
        what huggingface_hub's `http_get` may meet when it resumes a complete file.
        """
        header = self.headers.get("Range")
        if not header or not header.startswith("bytes=") or "," in header:
            return None
        first, dash, last = header.removeprefix("bytes=").strip().partition("-")
        if not dash or not (first or last) or not (first or "0").isdigit():
            return None
        if last and not last.isdigit():
            return None
        unsatisfiable = HubError(
            416, None, f"range {header} outside {size} bytes", {"Content-Range": f"bytes */{size}"}
        )
        if not first:  # suffix range: the last N bytes
            if int(last) == 0 or size == 0:
                raise unsatisfiable
            return max(0, size - int(last)), size
        start, end = int(first), (int(last) + 1 if last else size)
        if last and int(last) < start:
            return None  # last < first: syntactically invalid, ignored
        if start >= size:
            raise unsatisfiable
        return start, min(end, size)

    def _apply_faults(
        self, route: Route, repo: str | None, path: str | None, content: bool
    ) -> list[Fault]:
        """Take the faults for this request: the status/slow ones where a request first
        arrives (`content=False`), the content ones where a file's bytes are sent
        (`content=True`), so each fault hits one hop of a redirected download, once."""

        def applies(fault: Fault) -> bool:
            return (fault.kind in CONTENT_FAULTS) == content and fault.matches(route, repo, path)

        faults = self.faults.take(applies)
        for fault in faults:
            if fault.kind == "slow":
                time.sleep(fault.delay_seconds)
        for fault in faults:
            if fault.kind == "status":
                code = {401: "GatedRepo", 404: "RepoNotFound"}.get(fault.status)
                raise HubError(fault.status, code, f"injected {fault.status}")
        return faults

    def _send_json(
        self,
        body: Any,
        status: int = 200,
        error_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for header, value in (headers or {}).items():
            self.send_header(header, value)
        if error_code:
            self.send_header("X-Error-Code", error_code)
        if status >= 400:
            self.send_header("X-Error-Message", str(body.get("error", "")))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _answer(self, work: Any) -> None:
        """Run `work`, turning a HubError into its error answer."""
        try:
            work()
        except HubError as error:
            self._send_json({"error": error.message}, error.status, error.code, error.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass


class HubHandler(_FileSender):
    """Answers one request against the server's `RepoStore` and `FaultBook`."""

    cdn_url: ClassVar[str]

    def do_HEAD(self) -> None:
        self._answer(lambda: self._dispatch(head=True))

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/_sandbox/stats":
            self._send_json(self.stats.to_json())
            return
        self._answer(lambda: self._dispatch(head=False))

    def do_POST(self) -> None:
        if urlsplit(self.path).path.startswith("/api/"):
            self._answer(self._api_post)
        else:
            self._control("POST")

    def do_DELETE(self) -> None:
        self._control("DELETE")

    # -- routing ---------------------------------------------------------------------------

    def _dispatch(self, *, head: bool) -> None:
        url = urlsplit(self.path)
        parts = [unquote(part) for part in url.path.split("/") if part]
        query = parse_qs(url.query)
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            self._api(parts[2:], query)
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head)
        else:
            raise HubError(404, None, f"no route for {url.path}")

    def _api(self, parts: list[str], query: dict[str, list[str]]) -> None:
        repo_id, rest = f"{parts[0]}/{parts[1]}", parts[2:]
        path = "/".join(rest[2:]) if rest[:1] == ["tree"] else None
        self._apply_faults("api", repo_id, path, content=False)
        repo = self._repo(repo_id)
        if not rest:
            self._send_json(_model_info(repo, self._commit(repo, "main")))
        elif rest[0] == "revision" and len(rest) == 2:
            self._send_json(_model_info(repo, self._commit(repo, rest[1])))
        elif rest[0] == "tree" and len(rest) >= 2:
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            self._send_json(_tree(self._commit(repo, rest[1]), path or "", recursive))
        elif rest == ["refs"]:
            with_prs = query.get("include_prs", ["0"])[0] not in ("0", "false", "False")
            self._send_json(_refs(repo, with_prs))
        else:
            raise HubError(404, None, f"no API route /{'/'.join(rest)}")

    def _api_post(self) -> None:
        """POST /api/models/{repo}/paths-info/{rev}: the entries of the paths asked for, as
        `HfApi.get_paths_info` sends them (form fields `paths`, repeated, and `expand`);
        paths that do not exist are left out, as on the Hub (hf_api.py, get_paths_info)."""
        url = urlsplit(self.path)
        parts = [unquote(part) for part in url.path.split("/") if part]
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
        if parts[:2] != ["api", "models"] or len(parts) != 6 or parts[4] != "paths-info":
            raise HubError(404, None, f"no route for POST {url.path}")
        repo_id = f"{parts[2]}/{parts[3]}"
        self._apply_faults("api", repo_id, None, content=False)
        commit = self._commit(self._repo(repo_id), parts[5])
        self._send_json(_paths_info(commit, form.get("paths", [])))

    def _resolve(self, repo_id: str, revision: str, path: str, head: bool) -> None:
        self._apply_faults("resolve", repo_id, path, content=False)
        repo = self._repo(repo_id)
        self._check_download_access(repo)
        commit = self._commit(repo, revision)
        info = commit.files.get(path)
        if info is None:
            raise HubError(404, "EntryNotFound", f"{path} not found at {commit.oid}")
        headers = {"ETag": f'"{info.etag}"', "X-Repo-Commit": commit.oid}
        if info.lfs:
            # The Hub answers an LFS file with a 302 to a signed CDN URL on another host; the
            # file's metadata rides on the redirect itself (X-Linked-Etag/-Size), which is
            # where huggingface_hub reads it without following: utils/_http.py,
            # _httpx2_follow_hub_redirects_with_backoff and file_download.py,
            # get_hf_file_metadata ("X-Linked-Size … or (None if response.is_redirect …)").
            location = f"{self.cdn_url}/{repo_id}/{info.sha256}?path={quote(path, safe='')}"
            headers |= {
                "Location": location,
                "X-Linked-Etag": f'"{info.sha256}"',
                "X-Linked-Size": str(info.size),
                "Content-Length": "0",
            }
            self.send_response(302)
            for header, value in headers.items():
                self.send_header(header, value)
            self.end_headers()
            return
        faults = [] if head else self._apply_faults("resolve", repo_id, path, content=True)
        self._send_file(path, info.blob_path, headers, faults, head)

    # -- pieces ----------------------------------------------------------------------------

    def _repo(self, repo_id: str) -> Repo:
        repo = self.store.get(repo_id)
        if repo is None:
            raise HubError(404, "RepoNotFound", f"Repository {repo_id} not found")
        return repo

    def _check_download_access(self, repo: Repo) -> None:
        """A gated repo lists its files to anyone ("You can list files but not access them",
        https://huggingface.co/docs/hub/models-gated) and serves them only to an account
        that accepted its terms: no token → 401, another account's token → 403, both with
        X-Error-Code GatedRepo, which huggingface_hub turns into GatedRepoError
        (utils/_http.py, hf_raise_for_status)."""
        if repo.gated_token is None:
            return
        sent = self.headers.get("Authorization", "")
        if not sent:
            raise HubError(
                401,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted. You must have access to it "
                "and be authenticated to access it. Please log in.",
            )
        if sent != f"Bearer {repo.gated_token}":
            raise HubError(
                403,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted and you are not in the "
                "authorized list. Visit the repo's page to ask for access.",
            )

    @staticmethod
    def _commit(repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def _control(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send_json({"error": "the body is not JSON"}, 400)
            return
        route = urlsplit(self.path).path
        if route == "/_sandbox/faults" and method == "POST":
            self.faults.add(Fault(**body))
        elif route == "/_sandbox/faults" and method == "DELETE":
            self.faults.clear()
        elif route == "/_sandbox/branches" and method == "POST":
            self.store.move_branch(body["repo"], body["branch"], body["commit"])
        elif route == "/_sandbox/stats" and method == "DELETE":
            self.stats.reset()
        else:
            self._send_json({"error": f"no control route {method} {route}"}, 404)
            return
        self._send_json({"ok": True})


class CdnHandler(_FileSender):
    """The CDN the Hub redirects LFS downloads to: bytes by sha256, no auth, Range as usual.
    It counts requests that arrive with an Authorization header: a client must drop the Hub
    token when it follows the redirect off the Hub (file_download.py, `_hf_hub_download_to_
    cache_dir`: "Remove authorization header when downloading a LFS blob from a CDN")."""

    def do_HEAD(self) -> None:
        self._answer(lambda: self._blob(head=True))

    def do_GET(self) -> None:
        self._answer(lambda: self._blob(head=False))

    def _blob(self, *, head: bool) -> None:
        if self.headers.get("Authorization"):
            self.stats.cdn_saw_token()
        url = urlsplit(self.path)
        parts = [unquote(part) for part in url.path.split("/") if part]
        path = parse_qs(url.query).get("path", [""])[0]
        if len(parts) != 3 or len(parts[2]) != 64:
            raise HubError(404, None, f"no such object {url.path}")
        repo_id, sha256 = f"{parts[0]}/{parts[1]}", parts[2]
        blob = self.store.blobs / sha256
        if not blob.is_file():
            raise HubError(404, None, f"no such object {sha256}")
        faults = [] if head else self._apply_faults("resolve", repo_id, path, content=True)
        name = path.rpartition("/")[2] or sha256
        headers = {
            "ETag": f'"{sha256}"',
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\"",
        }
        self._send_file(path, blob, headers, faults, head)


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
            entries.append(_file_entry(info))
    return entries


def _file_entry(info: RepoFileInfo) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "file",
        "oid": info.git_oid,
        "size": info.size,
        "path": info.path,
    }
    if info.lfs:
        entry["lfs"] = {"oid": info.sha256, "size": info.size, "pointerSize": info.pointer_size}
    return entry


def _paths_info(commit: Commit, paths: list[str]) -> list[dict[str, Any]]:
    folders = folders_of(commit.files)
    entries: list[dict[str, Any]] = []
    for path in paths:
        path = path.strip("/")
        if path in commit.files:
            entries.append(_file_entry(commit.files[path]))
        elif path and path in folders:
            entries.append({"type": "directory", "oid": folders[path], "size": 0, "path": path})
    return entries


def _refs(repo: Repo, with_prs: bool) -> dict[str, Any]:
    def ref(kind: str, name: str, oid: str) -> dict[str, str]:
        return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid}

    refs: dict[str, Any] = {
        "branches": [ref("heads", name, oid) for name, oid in sorted(repo.branches.items())],
        "tags": [ref("tags", name, oid) for name, oid in sorted(repo.tags.items())],
        "converts": [],
    }
    if with_prs:  # `list_repo_refs(include_pull_requests=True)` sends include_prs=1
        refs["pullRequests"] = [
            ref("pr", str(number), oid) for number, oid in sorted(repo.pulls.items())
        ]
    return refs


class HubServer(BackgroundServer):
    """The sandbox Hub on a free local port (point `HF_ENDPOINT` at `url`), with its CDN on
    another port of the same host (`cdn_url`): a different origin, as the real CDN is."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = RepoStore(root)
        self.faults = FaultBook()
        self.stats = HubStats()
        shared = {"store": self.store, "faults": self.faults, "stats": self.stats}
        self.cdn = BackgroundServer(type("BoundCdnHandler", (CdnHandler,), shared), host, 0)
        handler = type("BoundHubHandler", (HubHandler,), {**shared, "cdn_url": self.cdn.url})
        super().__init__(handler, host, port)

    @property
    def cdn_url(self) -> str:
        return self.cdn.url

    def start(self) -> Self:
        self.cdn.start()
        return super().start()

    def stop(self) -> None:
        super().stop()
        self.cdn.stop()

    def inject(self, fault: Fault) -> None:
        """Make matching requests misbehave (see `Fault`)."""
        self.faults.add(fault)

    def clear_faults(self) -> None:
        """Behave again."""
        self.faults.clear()
