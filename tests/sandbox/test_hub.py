"""The sandbox Hub, driven by the real huggingface_hub client over HTTP."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

from sandbox.hub import Fault
from sandbox.hub.gitobjects import blob_oid
from tests.fixtures.sandbox_servers import TinyModelHub

WEIGHTS = "model.safetensors"


def sha256_of(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def download(hub: TinyModelHub, cache: Path, revision: str | None = None, **kwargs: object) -> str:
    return hf_hub_download(
        hub.repo_id, WEIGHTS, revision=revision, endpoint=hub.url, cache_dir=cache, **kwargs
    )


def test_snapshot_download_through_hf_endpoint(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    # HF_ENDPOINT is read when huggingface_hub is imported, so use a fresh interpreter.
    script = (
        "import sys; from huggingface_hub import snapshot_download; "
        "print(snapshot_download(sys.argv[1], cache_dir=sys.argv[2]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, tiny_hub.repo_id, str(tmp_path / "cache")],
        env={**os.environ, "HF_ENDPOINT": tiny_hub.url, "HF_HUB_DISABLE_PROGRESS_BARS": "1"},
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    snapshot = Path(result.stdout.strip().splitlines()[-1])
    assert snapshot.name == tiny_hub.commit
    for original in tiny_hub.model_dir.iterdir():
        assert sha256_of(snapshot / original.name) == sha256_of(original)


def test_revision_resolves_to_the_commit(tiny_hub: TinyModelHub) -> None:
    api = HfApi(endpoint=tiny_hub.url)
    assert api.model_info(tiny_hub.repo_id, revision="main").sha == tiny_hub.commit
    assert api.model_info(tiny_hub.repo_id).sha == tiny_hub.commit
    tiny_hub.server.store.tag(tiny_hub.repo_id, "v1.0", tiny_hub.commit)
    assert api.model_info(tiny_hub.repo_id, revision="v1.0").sha == tiny_hub.commit
    assert api.model_info(tiny_hub.repo_id, revision=tiny_hub.commit).sha == tiny_hub.commit
    refs = api.list_repo_refs(tiny_hub.repo_id)
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", tiny_hub.commit)]


def test_tree_lists_sizes_git_ids_and_lfs_sha256(tiny_hub: TinyModelHub) -> None:
    api = HfApi(endpoint=tiny_hub.url)
    entries = {e.path: e for e in api.list_repo_tree(tiny_hub.repo_id, recursive=True)}
    assert set(entries) == {p.name for p in tiny_hub.model_dir.iterdir()}
    weights = entries[WEIGHTS]
    assert weights.lfs is not None
    assert weights.lfs.sha256 == sha256_of(tiny_hub.model_dir / WEIGHTS)
    assert weights.size == (tiny_hub.model_dir / WEIGHTS).stat().st_size
    config = entries["config.json"]
    assert config.lfs is None
    assert config.blob_id == blob_oid((tiny_hub.model_dir / "config.json").read_bytes())


def test_tree_of_a_subfolder(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    folder = tmp_path / "sharded"
    (folder / "shards").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "shards" / "a.safetensors").write_bytes(b"a" * 100)
    tiny_hub.server.store.commit_folder("org/sharded", folder)
    api = HfApi(endpoint=tiny_hub.url)
    top = [(e.path, type(e).__name__) for e in api.list_repo_tree("org/sharded")]
    assert top == [("shards", "RepoFolder"), ("config.json", "RepoFile")]
    inner = [e.path for e in api.list_repo_tree("org/sharded", path_in_repo="shards")]
    assert inner == ["shards/a.safetensors"]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed to compare with")
def test_commit_ids_are_the_ones_git_computes(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    store = tiny_hub.server.store
    folder = tmp_path / "plain"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("hello\n")
    (folder / "sub" / "b.json").write_text('{"x": 1}\n')
    commit = store.commit_folder("org/plain", folder, message="Upload model")
    timestamp = store.repos["org/plain"].commits[commit].timestamp
    identity = {
        "GIT_AUTHOR_NAME": "Sandbox Hub", "GIT_AUTHOR_EMAIL": "hub@sandbox.invalid",
        "GIT_COMMITTER_NAME": "Sandbox Hub", "GIT_COMMITTER_EMAIL": "hub@sandbox.invalid",
        "GIT_AUTHOR_DATE": f"{timestamp} +0000", "GIT_COMMITTER_DATE": f"{timestamp} +0000",
    }  # fmt: skip

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=folder, env={**os.environ, **identity},
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    git("init", "-q")
    git("add", ".")
    tree = git("write-tree")
    assert git("commit-tree", tree, "-m", "Upload model") == commit


def test_branch_moves_but_a_pinned_commit_does_not(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    changed = tmp_path / "v2"
    shutil.copytree(tiny_hub.model_dir, changed)
    (changed / "config.json").write_text('{"changed": true}\n')
    new = tiny_hub.server.store.commit_folder(tiny_hub.repo_id, changed, move_branch=False)
    api = HfApi(endpoint=tiny_hub.url)
    assert api.model_info(tiny_hub.repo_id, revision="main").sha == tiny_hub.commit
    tiny_hub.server.store.move_branch(tiny_hub.repo_id, "main", new)
    assert api.model_info(tiny_hub.repo_id, revision="main").sha == new
    old_config = hf_hub_download(
        tiny_hub.repo_id, "config.json", revision=tiny_hub.commit, endpoint=tiny_hub.url,
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    assert Path(old_config).read_bytes() == (tiny_hub.model_dir / "config.json").read_bytes()


def test_resolve_headers_and_range_requests(tiny_hub: TinyModelHub) -> None:
    url = f"{tiny_hub.url}/{tiny_hub.repo_id}/resolve/main/{WEIGHTS}"
    head = httpx2.head(url)
    expected = sha256_of(tiny_hub.model_dir / WEIGHTS)
    assert head.headers["X-Repo-Commit"] == tiny_hub.commit
    assert head.headers["X-Linked-Etag"] == f'"{expected}"'
    size = (tiny_hub.model_dir / WEIGHTS).stat().st_size
    assert int(head.headers["X-Linked-Size"]) == size
    part = httpx2.get(url, headers={"Range": "bytes=10-19"}, follow_redirects=True)
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 10-19/{size}"
    assert part.content == (tiny_hub.model_dir / WEIGHTS).read_bytes()[10:20]


def test_an_lfs_file_is_a_302_to_a_cdn_host_that_never_gets_the_token(
    tiny_hub: TinyModelHub, tmp_path: Path
) -> None:
    redirect = httpx2.head(f"{tiny_hub.url}/{tiny_hub.repo_id}/resolve/main/{WEIGHTS}")
    assert redirect.status_code == 302
    assert redirect.headers["Location"].startswith(tiny_hub.server.cdn_url + "/")
    assert tiny_hub.server.cdn_url != tiny_hub.url  # another origin: the token must stay home
    small = httpx2.head(f"{tiny_hub.url}/{tiny_hub.repo_id}/resolve/main/config.json")
    assert small.status_code == 200  # small files are served by the Hub itself
    path = download(tiny_hub, tmp_path, token="hf_user_token")
    assert sha256_of(path) == sha256_of(tiny_hub.model_dir / WEIGHTS)
    assert tiny_hub.server.stats.body_bytes[WEIGHTS] == Path(path).stat().st_size
    assert tiny_hub.server.stats.cdn_authorizations == 0


def test_a_gated_repo_lists_its_files_but_serves_them_only_to_an_accepted_token(
    tiny_hub: TinyModelHub, tmp_path: Path
) -> None:
    tiny_hub.server.store.set_gated(tiny_hub.repo_id, "hf_accepted")
    anonymous = HfApi(endpoint=tiny_hub.url, token=False)
    info = anonymous.model_info(tiny_hub.repo_id)
    assert (info.sha, info.gated) == (tiny_hub.commit, "manual")
    assert WEIGHTS in {entry.path for entry in anonymous.list_repo_tree(tiny_hub.repo_id)}
    with pytest.raises(GatedRepoError) as no_token:
        download(tiny_hub, tmp_path / "a", token=False)
    assert no_token.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as not_accepted:
        download(tiny_hub, tmp_path / "b", token="hf_someone_else")
    assert not_accepted.value.response.status_code == 403
    path = download(tiny_hub, tmp_path / "c", token="hf_accepted")
    assert sha256_of(path) == sha256_of(tiny_hub.model_dir / WEIGHTS)


def test_paths_info_answers_for_the_paths_asked(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    folder = tmp_path / "nested"
    (folder / "shards").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "shards" / "a.safetensors").write_bytes(b"a" * 100)
    tiny_hub.server.store.commit_folder("org/nested", folder)
    api = HfApi(endpoint=tiny_hub.url)
    entries = api.get_paths_info(
        "org/nested", ["shards/a.safetensors", "shards", "config.json", "missing.bin"]
    )
    by_path = {entry.path: entry for entry in entries}
    assert set(by_path) == {"shards/a.safetensors", "shards", "config.json"}
    weights = by_path["shards/a.safetensors"]
    assert isinstance(weights, RepoFile) and weights.lfs is not None
    assert weights.lfs.sha256 == hashlib.sha256(b"a" * 100).hexdigest()
    assert isinstance(by_path["shards"], RepoFolder)


@pytest.mark.parametrize("file", ["config.json", WEIGHTS])  # served by the Hub / by the CDN
def test_range_edge_cases_are_answered_as_rfc_9110_says(tiny_hub: TinyModelHub, file: str) -> None:
    url = f"{tiny_hub.url}/{tiny_hub.repo_id}/resolve/main/{file}"
    data = (tiny_hub.model_dir / file).read_bytes()
    size = len(data)

    def get(range_header: str) -> httpx2.Response:
        return httpx2.get(url, headers={"Range": range_header}, follow_redirects=True)

    for malformed in ["bytes=abc-", "bytes=5-2", "bytes=-", "items=0-5", "bytes=0-1,4-5"]:
        answer = get(malformed)
        assert (answer.status_code, answer.content) == (200, data), malformed
    beyond = get(f"bytes={size}-")
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{size}"
    suffix = get("bytes=-10")
    assert (suffix.status_code, suffix.content) == (206, data[-10:])
    assert suffix.headers["Content-Range"] == f"bytes {size - 10}-{size - 1}/{size}"


def test_a_zero_byte_file_is_served(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    folder = tmp_path / "with-empty"
    folder.mkdir()
    (folder / "empty.txt").write_bytes(b"")
    (folder / "config.json").write_text("{}")
    tiny_hub.server.store.commit_folder("org/with-empty", folder)
    path = hf_hub_download("org/with-empty", "empty.txt", endpoint=tiny_hub.url, cache_dir=tmp_path)
    assert Path(path).read_bytes() == b""
    # hf_hub_download skips the GET of an empty file (file_download.py, http_get: "If the
    # file is already fully downloaded…"), so ask for it directly, whole and by range:
    url = f"{tiny_hub.url}/org/with-empty/resolve/main/empty.txt"
    whole = httpx2.get(url)
    assert (whole.status_code, whole.content) == (200, b"")
    assert httpx2.get(url, headers={"Range": "bytes=0-"}).status_code == 416


def test_short_shas_and_pull_request_refs_resolve(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    api = HfApi(endpoint=tiny_hub.url)
    assert api.model_info(tiny_hub.repo_id, revision=tiny_hub.commit[:7]).sha == tiny_hub.commit
    with pytest.raises(RevisionNotFoundError):
        api.model_info(tiny_hub.repo_id, revision=tiny_hub.commit[:6])  # shorter than git's
    proposal = tmp_path / "proposal"
    shutil.copytree(tiny_hub.model_dir, proposal)
    (proposal / "config.json").write_text('{"proposed": true}\n')
    number, commit = tiny_hub.server.store.open_pull_request(tiny_hub.repo_id, proposal)
    assert api.model_info(tiny_hub.repo_id, revision=f"refs/pr/{number}").sha == commit
    refs = api.list_repo_refs(tiny_hub.repo_id, include_pull_requests=True)
    assert [(ref.ref, ref.target_commit) for ref in refs.pull_requests or []] == [
        (f"refs/pr/{number}", commit)
    ]
    config = hf_hub_download(
        tiny_hub.repo_id, "config.json", revision=f"refs/pr/{number}", endpoint=tiny_hub.url,
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    assert Path(config).read_text() == '{"proposed": true}\n'
    assert api.model_info(tiny_hub.repo_id, revision="main").sha == tiny_hub.commit  # untouched


def test_the_ignore_range_fault_answers_200_with_the_whole_file(tiny_hub: TinyModelHub) -> None:
    tiny_hub.server.inject(Fault("ignore_range", path=WEIGHTS, times=1))
    url = f"{tiny_hub.url}/{tiny_hub.repo_id}/resolve/main/{WEIGHTS}"
    answer = httpx2.get(url, headers={"Range": "bytes=100-"}, follow_redirects=True)
    assert answer.status_code == 200
    assert answer.content == (tiny_hub.model_dir / WEIGHTS).read_bytes()


def test_the_cut_every_fault_drops_every_answer_after_n_bytes(tiny_hub: TinyModelHub) -> None:
    tiny_hub.server.inject(Fault("cut_every", path=WEIGHTS, offset=100_000))
    url = f"{tiny_hub.url}/{tiny_hub.repo_id}/resolve/main/{WEIGHTS}"
    data = (tiny_hub.model_dir / WEIGHTS).read_bytes()
    for start in (0, 100_000, 250_000):
        received = bytearray()
        with pytest.raises(httpx2.RemoteProtocolError):
            headers = {"Range": f"bytes={start}-"}
            with httpx2.stream("GET", url, headers=headers, follow_redirects=True) as answer:
                for chunk in answer.iter_bytes():
                    received += chunk
        assert bytes(received) == data[start : start + 100_000]


def test_sandbox_stats_are_readable_over_http(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    download(tiny_hub, tmp_path)
    stats = httpx2.get(f"{tiny_hub.url}/_sandbox/stats").json()
    assert stats["body_bytes"][WEIGHTS] == (tiny_hub.model_dir / WEIGHTS).stat().st_size
    httpx2.delete(f"{tiny_hub.url}/_sandbox/stats")
    assert httpx2.get(f"{tiny_hub.url}/_sandbox/stats").json()["body_bytes"] == {}


# -- faults: each gives the error the real Hub would cause in huggingface_hub ------------------


def test_corrupted_bytes_download_silently_with_the_wrong_hash(
    tiny_hub: TinyModelHub, tmp_path: Path
) -> None:
    # huggingface_hub checks sizes, not content: this is why llm-rollout verifies hashes.
    tiny_hub.server.inject(Fault("corrupt", path=WEIGHTS, offset=1000))
    path = download(tiny_hub, tmp_path)
    assert Path(path).stat().st_size == (tiny_hub.model_dir / WEIGHTS).stat().st_size
    assert sha256_of(path) != sha256_of(tiny_hub.model_dir / WEIGHTS)


def test_a_connection_cut_once_is_resumed(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    tiny_hub.server.inject(Fault("cut", path=WEIGHTS, offset=500_000, times=1))
    path = download(tiny_hub, tmp_path)
    assert sha256_of(path) == sha256_of(tiny_hub.model_dir / WEIGHTS)


def test_a_connection_cut_every_time_fails_the_download(
    tiny_hub: TinyModelHub, tmp_path: Path
) -> None:
    tiny_hub.server.inject(Fault("cut", path=WEIGHTS, offset=500_000))
    with pytest.raises(httpx2.RemoteProtocolError, match="peer closed connection"):
        download(tiny_hub, tmp_path)


def test_a_slow_answer_is_waited_for(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    tiny_hub.server.inject(Fault("slow", path=WEIGHTS, delay_seconds=1.0, times=1))
    started = time.monotonic()
    path = download(tiny_hub, tmp_path)
    assert time.monotonic() - started >= 1.0
    assert sha256_of(path) == sha256_of(tiny_hub.model_dir / WEIGHTS)


def test_an_answer_slower_than_the_timeout_is_a_connection_error(
    tiny_hub: TinyModelHub, tmp_path: Path
) -> None:
    tiny_hub.server.inject(Fault("slow", route="api", delay_seconds=3.0))
    with pytest.raises(httpx2.ReadTimeout):
        HfApi(endpoint=tiny_hub.url).model_info(tiny_hub.repo_id, timeout=0.5)


def test_401_is_a_gated_repo_error(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    tiny_hub.server.inject(Fault("status", status=401))
    with pytest.raises(GatedRepoError):
        download(tiny_hub, tmp_path)


def test_404s_name_repo_revision_and_file(tiny_hub: TinyModelHub, tmp_path: Path) -> None:
    api = HfApi(endpoint=tiny_hub.url)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("nobody/nothing")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(tiny_hub.repo_id, revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(tiny_hub.repo_id, "missing.bin", endpoint=tiny_hub.url, cache_dir=tmp_path)
    tiny_hub.server.inject(Fault("status", status=404))
    with pytest.raises(RepositoryNotFoundError):
        download(tiny_hub, tmp_path)


def test_5xx_is_retried_then_reported_as_unreachable(
    tiny_hub: TinyModelHub, tmp_path: Path
) -> None:
    tiny_hub.server.inject(Fault("status", status=503, times=1))
    assert sha256_of(download(tiny_hub, tmp_path / "a")) == sha256_of(tiny_hub.model_dir / WEIGHTS)
    tiny_hub.server.inject(Fault("status", status=500, route="resolve"))
    with pytest.raises(LocalEntryNotFoundError):
        # huggingface_hub backs off 1+2+4+8+8 s before giving up on a HEAD that keeps failing
        download(tiny_hub, tmp_path / "b")


def test_faults_can_be_injected_over_http(tiny_hub: TinyModelHub) -> None:
    httpx2.post(f"{tiny_hub.url}/_sandbox/faults", json={"kind": "status", "status": 404})
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=tiny_hub.url).model_info(tiny_hub.repo_id)
    httpx2.delete(f"{tiny_hub.url}/_sandbox/faults")
    assert HfApi(endpoint=tiny_hub.url).model_info(tiny_hub.repo_id).sha == tiny_hub.commit
