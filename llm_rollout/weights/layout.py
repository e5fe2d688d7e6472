"""Where weights live under the root (the NFS export as mounted where the pipeline runs).

<root>/<owner>--<name>/<commit>/          published, verified, immutable; pods mount this
<root>/<owner>--<name>/<commit>/SHA256SUMS, llm-rollout-manifest.json
<root>/<owner>--<name>/refs/<revision>    the commit a branch or tag last resolved to
<root>/<owner>--<name>/latest             symlink to the newest published commit (humans)
<root>/<owner>--<name>/.lock              serialises fetches and pruning of the repo
<root>/.staging/<owner>--<name>--<commit>/ downloads in progress (same filesystem)
<root>/.verify-cache/<owner>--<name>/<commit>.json   stat cache for cheap re-verification
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "llm-rollout-manifest.json"
CHECKSUMS_NAME = "SHA256SUMS"
RESERVED_NAMES = frozenset({MANIFEST_NAME, CHECKSUMS_NAME})
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def repo_slug(repo_id: str) -> str:
    """'deepseek-ai/DeepSeek-V4' → 'deepseek-ai--DeepSeek-V4' (as the HF cache names repos)."""
    return repo_id.replace("/", "--")


def is_commit(name: str) -> bool:
    """Whether `name` is a full 40-hex commit id."""
    return bool(_COMMIT.match(name))


@dataclass(frozen=True)
class RepoLayout:
    """The paths of one repo under a weights root."""

    root: Path
    repo_id: str

    @property
    def repo_dir(self) -> Path:
        return self.root / repo_slug(self.repo_id)

    def commit_dir(self, commit: str) -> Path:
        return self.repo_dir / commit

    def staging_dir(self, commit: str) -> Path:
        return self.root / ".staging" / f"{repo_slug(self.repo_id)}--{commit}"

    def ref_file(self, revision: str) -> Path:
        # tags and branches may contain '/': keep them one file each
        return self.repo_dir / "refs" / revision.replace("/", "%2F")

    @property
    def latest_link(self) -> Path:
        return self.repo_dir / "latest"

    @property
    def lock_file(self) -> Path:
        return self.repo_dir / ".lock"

    def stat_cache(self, commit: str) -> Path:
        return self.root / ".verify-cache" / repo_slug(self.repo_id) / f"{commit}.json"

    def published_commits(self) -> list[str]:
        """Every published commit of the repo (folders with a manifest)."""
        if not self.repo_dir.is_dir():
            return []
        return sorted(
            path.name
            for path in self.repo_dir.iterdir()
            if is_commit(path.name) and (path / MANIFEST_NAME).is_file()
        )
