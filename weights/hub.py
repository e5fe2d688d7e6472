"""The Hugging Face Hub, through `huggingface_hub`: resolve a revision, list a commit's files
with their published hashes, and stream a file to disk while hashing it.

`endpoint` defaults to huggingface_hub's own (which honours `HF_ENDPOINT` for mirrors) and
`token` to its own lookup (`HF_TOKEN`, then the stored login). The token is sent only in
request headers: it never appears in our messages, logs or metadata.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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

from weights.errors import (
    ChecksumMismatch,
    HubAccessDenied,
    HubUnreachable,
    RepoNotFound,
    RevisionNotFound,
    SizeMismatch,
    WeightsError,
)
from weights.hashing import ContentHasher, FileHash

# A connection cut or a 5xx mid-file is retried, resuming where it stopped, this many times
# with exponential backoff: enough to ride out a flaky proxy, bounded so a dead Hub fails.
DOWNLOAD_ATTEMPTS = 5
BACKOFF_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 8.0
# Connect/read timeouts; a read that stalls this long counts as a cut and is retried.
TIMEOUT = httpx2.Timeout(30.0, connect=10.0)
STREAM_CHUNK = 4 * 1024 * 1024
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RemoteFile:
    """A file at a commit and the hash the Hub publishes for it (sha256 if LFS, else git sha1)."""

    path: str
    size: int
    lfs: bool
    expected_hash: str


class HubClient:
    """Typed access to the parts of the Hub the weights pipeline needs."""

    def __init__(self, endpoint: str | None = None, token: str | None = None) -> None:
        self._api = HfApi(endpoint=endpoint, token=token)
        self.endpoint = self._api.endpoint
        self._token = token

    def resolve(self, repo_id: str, revision: str) -> str:
        """The commit that `revision` (branch, tag or commit) points at now."""
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

    def download(
        self,
        repo_id: str,
        commit: str,
        remote: RemoteFile,
        destination: Path,
        on_bytes: Callable[[int], None] = lambda _: None,
    ) -> FileHash:
        """Stream `remote` at `commit` into `destination`, hashing as it arrives; resume after
        a cut; raise if the size or hash differs from what the Hub published."""
        url = hf_hub_url(repo_id, remote.path, revision=commit, endpoint=self.endpoint)
        hasher = ContentHasher(remote.size, git_sha1=not remote.lfs)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with destination.open("wb") as out, _translated_errors(repo_id, commit):
            for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
                try:
                    hasher = self._stream_into(url, out, hasher, remote, on_bytes)
                    break
                except (httpx2.TransportError, _RetryableStatus) as failure:
                    if attempt == DOWNLOAD_ATTEMPTS:
                        raise HubUnreachable(
                            f"downloading {remote.path} of {repo_id}@{commit} failed "
                            f"{DOWNLOAD_ATTEMPTS} times (last: {failure}); check the network "
                            "or HF_ENDPOINT and run again"
                        ) from failure
                    time.sleep(min(BACKOFF_SECONDS * 2 ** (attempt - 1), BACKOFF_MAX_SECONDS))
        if hasher.size != remote.size:
            raise SizeMismatch(
                f"{remote.path} of {repo_id}@{commit}: the Hub lists {remote.size} bytes but "
                f"sent {hasher.size}; nothing was published, run again"
            )
        actual = hasher.hub_hash(remote.lfs)
        if actual != remote.expected_hash:
            kind = "sha256" if remote.lfs else "git sha1"
            raise ChecksumMismatch(
                f"{remote.path} of {repo_id}@{commit}: {kind} is {actual}, the Hub published "
                f"{remote.expected_hash}; the download was corrupted (proxy, mirror or disk) "
                "and nothing was published"
            )
        sha1 = hasher.sha1.hexdigest() if hasher.sha1 is not None else None
        return FileHash(remote.path, hasher.size, hasher.sha256.hexdigest(), sha1)

    def _stream_into(
        self,
        url: str,
        out: BinaryIO,
        hasher: ContentHasher,
        remote: RemoteFile,
        on_bytes: Callable[[int], None],
    ) -> ContentHasher:
        headers = build_hf_headers(token=self._token, headers={"Accept-Encoding": "identity"})
        resuming = hasher.size > 0
        if resuming:
            headers["Range"] = f"bytes={hasher.size}-"
        session = get_session()
        with session.stream(
            "GET", url, headers=headers, follow_redirects=True, timeout=TIMEOUT
        ) as response:
            if response.status_code in RETRYABLE_STATUS:
                raise _RetryableStatus(f"HTTP {response.status_code}")
            if response.status_code >= 400:
                response.read()  # the error body names the problem; a stream must read it first
            hf_raise_for_status(response)
            if resuming and response.status_code != 206:
                # the server ignored the Range: start the file over
                out.seek(0)
                out.truncate()
                on_bytes(-hasher.size)
                hasher = ContentHasher(remote.size, git_sha1=not remote.lfs)
            for chunk in response.iter_bytes(STREAM_CHUNK):
                out.write(chunk)
                hasher.update(chunk)
                on_bytes(len(chunk))
        return hasher


class _RetryableStatus(Exception):
    """A 429/5xx answer to a file request: retried like a cut connection."""


@contextmanager
def _translated_errors(repo_id: str, revision: str) -> Iterator[None]:
    """Turn huggingface_hub and network errors into ours, with what to do next."""
    try:
        yield
    except GatedRepoError as error:
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
