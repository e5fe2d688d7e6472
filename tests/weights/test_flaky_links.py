"""Downloads through proxies and links that misbehave: never a wrong byte published, and a
link that keeps dropping still finishes (issue #23)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from llm_rollout.weights.errors import HubAccessDenied, HubUnreachable
from llm_rollout.weights.fetch import WeightsSource, fetch_weights
from llm_rollout.weights.hub import HubClient
from llm_rollout.weights.layout import RepoLayout
from sandbox.hub import Fault
from tests.fixtures.sandbox_servers import TinyModelHub
from tests.weights.conftest import FAST_RETRY

WEIGHTS = "model.safetensors"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_ignored_range_between_two_cuts_never_publishes_a_wrong_file(
    tiny_hub: TinyModelHub, hub_client: HubClient, root: Path, tmp_path: Path
) -> None:
    # a 10 MB shard (bigger than a client's read buffer, so the first cut leaves bytes on disk)
    folder = tmp_path / "big"
    folder.mkdir()
    original = folder / WEIGHTS
    original.write_bytes(os.urandom(10_000_000))
    tiny_hub.server.store.commit_folder("org/big", folder)
    # 1st request cut at 5 MB; the 2nd (Range: bytes=<what we have>-) is answered 200 with
    # the whole file by a proxy and cut at 9 MB; the 3rd gets an honest 206.
    tiny_hub.server.inject(Fault("cut", path=WEIGHTS, offset=5_000_000, times=1))
    tiny_hub.server.inject(Fault("ignore_range", path=WEIGHTS, skip=1, times=1))
    tiny_hub.server.inject(Fault("cut", path=WEIGHTS, offset=9_000_000, skip=1, times=1))
    result = fetch_weights(WeightsSource("org/big", "main"), root, hub_client)
    assert tiny_hub.server.stats.file_requests[WEIGHTS] == 3  # the scenario really happened
    published = result.folder / WEIGHTS
    assert published.stat().st_size == original.stat().st_size
    assert sha256_of(published) == sha256_of(original)


def test_a_link_that_drops_every_300_kb_still_delivers_the_file_without_waste(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path
) -> None:
    size = (tiny_hub.model_dir / WEIGHTS).stat().st_size  # 1.8 MB: seven drops
    assert FAST_RETRY.progress_bytes < 300_000  # each connection counts as progress
    tiny_hub.server.inject(Fault("cut_every", path=WEIGHTS, offset=300_000))
    result = fetch_weights(source, root, hub_client)
    assert sha256_of(result.folder / WEIGHTS) == sha256_of(tiny_hub.model_dir / WEIGHTS)
    assert tiny_hub.server.stats.file_requests[WEIGHTS] == -(-size // 300_000)
    assert tiny_hub.server.stats.body_bytes[WEIGHTS] <= 1.1 * size


def test_a_link_that_stops_making_progress_fails_after_the_budget_and_keeps_the_partial(
    tiny_hub: TinyModelHub, hub_client: HubClient, source: WeightsSource, root: Path,
    layout: RepoLayout,
) -> None:  # fmt: skip
    tiny_hub.server.inject(Fault("cut", path=WEIGHTS, offset=700_000))
    with pytest.raises(HubUnreachable, match=r"model\.safetensors.*failed 5 times in a row"):
        fetch_weights(source, root, hub_client)
    assert layout.published_commits() == []
    assert (layout.staging_dir(tiny_hub.commit) / WEIGHTS).stat().st_size == 700_000
    assert tiny_hub.server.stats.file_requests[WEIGHTS] == 1 + FAST_RETRY.attempts


def test_the_token_goes_to_the_hub_but_never_to_the_cdn(
    tiny_hub: TinyModelHub, source: WeightsSource, root: Path
) -> None:
    tiny_hub.server.store.set_gated(tiny_hub.repo_id, "hf_accepted")
    client = HubClient(endpoint=tiny_hub.url, token="hf_accepted", retry=FAST_RETRY)
    result = fetch_weights(source, root, client)
    assert sha256_of(result.folder / WEIGHTS) == sha256_of(tiny_hub.model_dir / WEIGHTS)
    assert tiny_hub.server.stats.body_bytes[WEIGHTS] > 0  # it came through the CDN
    assert tiny_hub.server.stats.cdn_authorizations == 0


def test_a_gated_repo_says_whether_the_token_is_missing_or_not_accepted(
    tiny_hub: TinyModelHub, source: WeightsSource, root: Path, layout: RepoLayout
) -> None:
    tiny_hub.server.store.set_gated(tiny_hub.repo_id, "hf_accepted")
    anonymous = HubClient(endpoint=tiny_hub.url, retry=FAST_RETRY)
    with pytest.raises(HubAccessDenied, match="set HF_TOKEN"):
        fetch_weights(source, root, anonymous)
    someone_else = HubClient(endpoint=tiny_hub.url, token="hf_other", retry=FAST_RETRY)
    with pytest.raises(HubAccessDenied, match="has not been granted access; accept the repo's"):
        fetch_weights(source, root, someone_else)
    assert layout.published_commits() == []


def test_short_shas_pull_requests_and_empty_files_are_fetched(
    tiny_hub: TinyModelHub, hub_client: HubClient, root: Path, tmp_path: Path
) -> None:
    short = fetch_weights(WeightsSource(tiny_hub.repo_id, tiny_hub.commit[:7]), root, hub_client)
    assert short.commit == tiny_hub.commit
    proposal = tmp_path / "proposal"
    shutil.copytree(tiny_hub.model_dir, proposal)
    (proposal / "empty.txt").write_bytes(b"")
    number, commit = tiny_hub.server.store.open_pull_request(tiny_hub.repo_id, proposal)
    pull = fetch_weights(WeightsSource(tiny_hub.repo_id, f"refs/pr/{number}"), root, hub_client)
    assert pull.commit == commit
    assert (pull.folder / "empty.txt").read_bytes() == b""
    layout = RepoLayout(root, tiny_hub.repo_id)
    assert layout.ref_file(f"refs/pr/{number}").read_text().strip() == commit
