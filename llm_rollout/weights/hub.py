"""The Hugging Face Hub, through `huggingface_hub`: resolve a revision, list a commit's files
with their published hashes, and stream a file to disk while hashing it.

`endpoint` defaults to huggingface_hub's own (which honours `HF_ENDPOINT` for mirrors) and
`token` to its own lookup (`HF_TOKEN`, then the stored login). The token is sent only in
request headers: it never appears in our messages, logs or metadata.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from io import BufferedRandom
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx2
from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from llm_rollout.weights.errors import (
    ChecksumMismatch,
    HubAccessDenied,
    HubUnreachable,
    RepoNotFound,
    RevisionNotFound,
    SizeMismatch,
    WeightsError,
)
from llm_rollout.weights.hashing import READ_CHUNK, ContentHasher, FileHash

log = logging.getLogger(__name__)

# Connect/read timeouts; a read that stalls this long counts as a cut and is retried.
TIMEOUT = httpx2.Timeout(30.0, connect=10.0)
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# The Hub redirects LFS files once (to its CDN); a few more hops allow a mirror in front.
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class RetryPolicy:
    """How one file's download rides out a flaky link.

    The budget counts failed attempts *since the last progress*: a link that drops every
    15 MB still finishes a 100 GB shard, a link that makes no progress fails after
    `attempts` tries. Back-off doubles per failure without progress, capped, with jitter
    so eight parallel downloads behind one proxy do not retry in lock-step.
    """

    attempts: int = 5  # failures in a row without progress before giving up
    backoff_seconds: float = 0.5  # first wait; doubles per failure without progress
    backoff_max_seconds: float = 8.0  # a Hub restart or a proxy hiccup is over by then
    # An attempt "made progress" when it moved the high-water mark by this much (or to the
    # end): a link that trickles a few bytes per connection must not retry forever.
    progress_bytes: int = 256 * 1024

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `failures`-th failure in a row (equal jitter: half
        fixed, half random), or the server's Retry-After when that is longer (capped)."""
        ceiling = min(self.backoff_seconds * 2 ** (failures - 1), self.backoff_max_seconds)
        wait: float = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.backoff_max_seconds))
        return wait


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class RemoteFile:
    """A file at a commit and the hash the Hub publishes for it (sha256 if LFS, else git sha1)."""

    path: str
    size: int
    lfs: bool
    expected_hash: str


@dataclass(frozen=True)
class Download:
    """A file now complete and verified on disk, and what it cost."""

    hash: FileHash
    received_bytes: int  # body bytes read from the network, every attempt included
    reused_bytes: int  # bytes of a staged partial from an earlier run that were kept
    attempts: int


class HubClient:
    """Typed access to the parts of the Hub the weights pipeline needs."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._api = HfApi(endpoint=endpoint, token=token)
        self.endpoint = self._api.endpoint
        self._token = token
        self.retry = retry or DEFAULT_RETRY

    def resolve(self, repo_id: str, revision: str) -> str:
        """The commit that `revision` (branch, tag, commit or its prefix, refs/pr/N) points at."""
        with _translated_errors(repo_id, revision):
            info = self._api.model_info(repo_id, revision=revision, timeout=TIMEOUT.read)
        if not info.sha:
            raise WeightsError(f"the Hub sent no commit for {repo_id}@{revision}")
        return info.sha

    def list_files(
        self, repo_id: str, commit: str, allow_patterns: list[str] | None = None
    ) -> list[RemoteFile]:
        """Every file at `commit` (matching `allow_patterns`, if given) with its published hash."""
        with _translated_errors(repo_id, commit):
            entries = list(self._api.list_repo_tree(repo_id, revision=commit, recursive=True))
        files = [
            RemoteFile(
                entry.path,
                entry.size,
                entry.lfs is not None,
                entry.lfs.sha256 if entry.lfs is not None else entry.blob_id,
            )
            for entry in entries
            if isinstance(entry, RepoFile)
        ]
        if allow_patterns:
            files = [f for f in files if any(fnmatch.fnmatch(f.path, p) for p in allow_patterns)]
        return sorted(files, key=lambda f: f.path)

    def read_json(self, repo_id: str, commit: str, remote: RemoteFile) -> object:
        """A small JSON file of the repository (config.json), downloaded and verified like
        any other, parsed; for the checks made before the weights are downloaded."""
        with tempfile.TemporaryDirectory(prefix="llm-rollout-") as folder:
            path = Path(folder) / "file.json"
            self.download(repo_id, commit, remote, path)
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, ValueError) as error:
                raise WeightsError(f"{repo_id}@{commit}: {remote.path} is not JSON") from error

    def download(
        self,
        repo_id: str,
        commit: str,
        remote: RemoteFile,
        destination: Path,
        on_bytes: Callable[[int], None] = lambda _: None,
    ) -> Download:
        """Make `destination` hold exactly `remote` at `commit`, verified; raise otherwise.

        The file on disk is the truth. A partial left by an earlier run is re-hashed and
        resumed with a Range request; every byte is hashed as it is written, and whenever
        the download restarts (the server ignored Range, answered another range) the file
        is truncated and the same hasher reset, so the hashed length always equals the
        write position. The size and hash are then checked against the file on disk; a
        partial whose completion does not verify is downloaded once more from byte 0, and
        a file that still does not verify is deleted and reported.
        """
        url = hf_hub_url(repo_id, remote.path, revision=commit, endpoint=self.endpoint)
        destination.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(destination, os.O_RDWR | os.O_CREAT, 0o644)
        with os.fdopen(descriptor, "r+b") as out, _translated_errors(repo_id, commit):
            transfer = _Transfer(out, ContentHasher(remote.size, git_sha1=not remote.lfs), on_bytes)
            reused = transfer.adopt_partial(remote.size)
            received, attempts = self._fill(url, transfer, remote, f"{repo_id}@{commit}")
            problem = _check(transfer, remote, f"{repo_id}@{commit}")
            if problem is not None and reused:
                log.warning(
                    "%s: a staged partial did not verify; downloading it again", remote.path
                )
                transfer.restart()
                more, more_attempts = self._fill(url, transfer, remote, f"{repo_id}@{commit}")
                received, attempts = received + more, attempts + more_attempts
                reused = 0
                problem = _check(transfer, remote, f"{repo_id}@{commit}")
        if problem is not None:
            destination.unlink(missing_ok=True)  # never resume from bytes known to be wrong
            raise problem
        hasher = transfer.hasher
        sha1 = hasher.sha1.hexdigest() if hasher.sha1 is not None else None
        digest = FileHash(remote.path, hasher.size, hasher.sha256.hexdigest(), sha1)
        return Download(digest, received, reused, attempts)

    def _fill(
        self, url: str, transfer: _Transfer, remote: RemoteFile, where: str
    ) -> tuple[int, int]:
        """Download until `transfer` holds `remote.size` bytes; (bytes received, attempts)."""
        policy = self.retry
        failures = attempts = received = 0
        high_water = transfer.hasher.size
        while transfer.hasher.size < remote.size:
            attempts += 1
            before = transfer.received
            try:
                self._attempt(url, transfer, remote)
                received += transfer.received - before
                break
            except (httpx2.TransportError, _RetryableStatus) as failure:
                received += transfer.received - before
                if transfer.hasher.size >= min(high_water + policy.progress_bytes, remote.size):
                    # progress: the link works, it only dropped; the budget starts again and
                    # the retry goes at once
                    high_water, failures = transfer.hasher.size, 0
                    continue
                failures += 1
                if failures >= policy.attempts:
                    raise HubUnreachable(
                        f"downloading {remote.path} of {where} failed {failures} times in a row "
                        f"without progress (last: {failure}); the {transfer.hasher.size} bytes "
                        "received are kept in staging and the next run resumes them: check the "
                        "network or HF_ENDPOINT and run again"
                    ) from failure
                retry_after = failure.retry_after if isinstance(failure, _RetryableStatus) else None
                time.sleep(policy.delay(failures, retry_after))
        return received, attempts

    def _attempt(self, url: str, transfer: _Transfer, remote: RemoteFile) -> None:
        """One GET of the rest of the file (all of it if nothing is kept), appended to disk."""
        start = transfer.hasher.size
        headers = build_hf_headers(token=self._token, headers={"Accept-Encoding": "identity"})
        if start:
            headers["Range"] = f"bytes={start}-"
        with _get_following_redirects(url, headers) as response:
            if response.status_code in RETRYABLE_STATUS:
                raise _RetryableStatus(response)
            if response.status_code == 416:
                raise SizeMismatch(
                    f"{remote.path}: the server has no bytes from {start} on (HTTP 416), but "
                    f"the Hub lists {remote.size}; the mirror or proxy serves another file. "
                    "Nothing was published; check HF_ENDPOINT and run again"
                )
            if response.status_code >= 400:
                response.read()  # the error body names the problem; a stream must read it first
            hf_raise_for_status(response)
            if start and _range_start(response) != start:
                # the server (or a proxy) ignored our Range, or answered another one: the
                # body starts at byte 0 or is unusable; start the file over, never append
                transfer.restart()
                if response.status_code == 206:
                    raise _RetryableStatus(response)
            # chunks as they arrive: a fixed chunk size would make httpx buffer, and a cut
            # connection would lose up to a chunk of bytes that had arrived intact
            for chunk in response.iter_bytes():
                if transfer.hasher.size + len(chunk) > remote.size:
                    raise SizeMismatch(
                        f"{remote.path}: the server sent more than the {remote.size} bytes the "
                        "Hub lists; nothing was published, check HF_ENDPOINT and run again"
                    )
                transfer.append(chunk)


class _Transfer:
    """A file being downloaded: the open file and one hasher, kept equal at every step (the
    hashed length is the write position and the file's size)."""

    def __init__(self, out: BufferedRandom, hasher: ContentHasher, on_bytes: Callable[[int], None]):
        self.out, self.hasher, self.on_bytes = out, hasher, on_bytes
        self.received = 0

    def adopt_partial(self, expected_size: int) -> int:
        """Re-hash what an earlier run left in the file and keep it; the bytes kept."""
        size = os.fstat(self.out.fileno()).st_size
        if size > expected_size:
            self.restart()
            return 0
        buffer = bytearray(READ_CHUNK)
        view = memoryview(buffer)
        self.out.seek(0)
        while self.hasher.size < size and (read := self.out.readinto(buffer)):
            self.hasher.update(view[: min(read, size - self.hasher.size)])
        self._truncate_to_hashed()
        self.on_bytes(self.hasher.size)
        return self.hasher.size

    def append(self, chunk: bytes) -> None:
        self.out.write(chunk)
        self.hasher.update(chunk)
        self.received += len(chunk)
        self.on_bytes(len(chunk))

    def restart(self) -> None:
        """Back to byte 0: empty file, the same hasher reset."""
        self.on_bytes(-self.hasher.size)
        self.hasher.reset()
        self._truncate_to_hashed()

    def _truncate_to_hashed(self) -> None:
        self.out.flush()
        self.out.seek(self.hasher.size)
        self.out.truncate()


def _check(transfer: _Transfer, remote: RemoteFile, where: str) -> WeightsError | None:
    """The file on disk against what the Hub published: None when it matches."""
    transfer.out.flush()
    on_disk = os.fstat(transfer.out.fileno()).st_size
    if on_disk != transfer.hasher.size:  # cannot happen by construction; never publish if it does
        return SizeMismatch(
            f"{remote.path} of {where}: {on_disk} bytes on disk but {transfer.hasher.size} "
            "hashed; nothing was published, run again"
        )
    if on_disk != remote.size:
        return SizeMismatch(
            f"{remote.path} of {where}: the Hub lists {remote.size} bytes but sent {on_disk}; "
            "nothing was published, run again"
        )
    actual = transfer.hasher.hub_hash(remote.lfs)
    if actual != remote.expected_hash:
        kind = "sha256" if remote.lfs else "git sha1"
        return ChecksumMismatch(
            f"{remote.path} of {where}: {kind} is {actual}, the Hub published "
            f"{remote.expected_hash}; the download was corrupted (proxy, mirror or disk) "
            "and nothing was published"
        )
    return None


def _range_start(response: httpx2.Response) -> int | None:
    """Where a 206 body starts (from Content-Range), or None for a whole-file answer."""
    if response.status_code != 206:
        return None
    value = response.headers.get("Content-Range", "")
    first = value.removeprefix("bytes ").partition("-")[0]
    return int(first) if first.isdigit() else None


@contextmanager
def _get_following_redirects(url: str, headers: dict[str, str]) -> Iterator[httpx2.Response]:
    """GET `url`, following redirects ourselves: the Hub sends LFS files to a CDN on another
    host with a signed URL, and the token must not go there. huggingface_hub does the same
    (file_download.py: "Remove authorization header when downloading a LFS blob from a CDN";
    utils/_http.py, _is_same_or_hub_host compares scheme, host and port)."""
    session = get_session()
    origin = _origin(url)
    with ExitStack() as stack:
        for _ in range(MAX_REDIRECTS + 1):
            response = stack.enter_context(
                session.stream("GET", url, headers=headers, follow_redirects=False, timeout=TIMEOUT)
            )
            location = response.headers.get("Location")
            if not (response.is_redirect and location):
                yield response
                return
            url = urljoin(url, location)
            if _origin(url) != origin:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        raise HubUnreachable(f"more than {MAX_REDIRECTS} redirects from {url}")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


class _RetryableStatus(Exception):
    """A 408/429/5xx answer to a file request (or an unusable 206): retried like a cut."""

    def __init__(self, response: httpx2.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        value = response.headers.get("Retry-After", "")
        self.retry_after = float(value) if value.isdigit() else None


@contextmanager
def _translated_errors(repo_id: str, revision: str) -> Iterator[None]:
    """Turn huggingface_hub and network errors into ours, with what to do next."""
    try:
        yield
    except GatedRepoError as error:
        if error.response is not None and error.response.status_code == 403:
            raise HubAccessDenied(
                f"{repo_id} is gated and the account of HF_TOKEN has not been granted access; "
                f"accept the repo's terms on its Hub page ({repo_id}), or use a token of an "
                "account that did"
            ) from error
        raise HubAccessDenied(
            f"{repo_id} is gated or private and the Hub refused access; set HF_TOKEN to a "
            "token whose account has accepted the repo's terms"
        ) from error
    except RevisionNotFoundError as error:
        raise RevisionNotFound(
            f"{repo_id} has no branch, tag or commit '{revision}'; check source.revision"
        ) from error
    except EntryNotFoundError as error:
        raise WeightsError(f"{repo_id}: the Hub lists a file it cannot serve: {error}") from error
    except RepositoryNotFoundError as error:
        raise RepoNotFound(
            f"{repo_id} does not exist on the Hub (or is private and HF_TOKEN cannot see it); "
            "check source.repo"
        ) from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            raise HubAccessDenied(f"the Hub refused access to {repo_id} (HTTP {status})") from error
        raise HubUnreachable(
            f"the Hub failed answering for {repo_id}@{revision} (HTTP {status}); try again later"
        ) from error
    except httpx2.TransportError as error:
        raise HubUnreachable(
            f"cannot reach the Hub for {repo_id}@{revision}: {type(error).__name__}: {error}; "
            "check the network or HF_ENDPOINT"
        ) from error
