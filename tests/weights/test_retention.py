"""Retention keeps the newest revisions and every one a release still uses."""

from __future__ import annotations

import shutil
from pathlib import Path

from llm_rollout.weights.fetch import WeightsSource, fetch_weights
from llm_rollout.weights.hub import HubClient
from llm_rollout.weights.layout import RepoLayout
from llm_rollout.weights.retention import prune
from tests.fixtures.sandbox_servers import TinyModelHub


def publish_revisions(hub: TinyModelHub, client: HubClient, root: Path, tmp: Path) -> list[str]:
    commits = [fetch_weights(WeightsSource(hub.repo_id, "main"), root, client).commit]
    for number in range(1, 4):
        folder = tmp / f"v{number}"
        shutil.copytree(hub.model_dir, folder)
        (folder / "config.json").write_text(f'{{"version": {number}}}\n')
        hub.server.store.commit_folder(hub.repo_id, folder)
        commits.append(fetch_weights(WeightsSource(hub.repo_id, "main"), root, client).commit)
    return commits  # oldest first


def test_prune_keeps_the_newest_and_the_protected(
    tiny_hub: TinyModelHub, hub_client: HubClient, root: Path, tmp_path: Path
) -> None:
    oldest, second, third, newest = publish_revisions(tiny_hub, hub_client, root, tmp_path)
    layout = RepoLayout(root, tiny_hub.repo_id)
    result = prune(root, tiny_hub.repo_id, keep=1, protected={oldest})
    assert sorted(result.deleted) == sorted([second, third])
    assert sorted(layout.published_commits()) == sorted([oldest, newest])
    assert not layout.commit_dir(second).exists()


def test_the_commit_latest_points_at_is_never_pruned(
    tiny_hub: TinyModelHub, hub_client: HubClient, root: Path, tmp_path: Path
) -> None:
    commits = publish_revisions(tiny_hub, hub_client, root, tmp_path)
    # an older revision fetched again by commit becomes "latest"
    fetch_weights(WeightsSource(tiny_hub.repo_id, commits[0]), root, hub_client)
    result = prune(root, tiny_hub.repo_id, keep=1, protected=set())
    assert commits[0] not in result.deleted
    assert commits[-1] not in result.deleted
