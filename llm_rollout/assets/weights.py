"""The weights asset of a model: its pinned revision, fetched, verified and published; and a
blocking check that the published folder still matches its manifest.

No `from __future__ import annotations` here: Dagster reads the context parameter's
annotation at definition time and needs the real class, not a string.
"""

import time

import dagster as dg
from pydantic import Field

from llm_rollout.assets.naming import asset_key, group_name
from llm_rollout.assets.versions import weights_version
from llm_rollout.k8s.fit import refuse_what_cannot_fit
from llm_rollout.pipelines.resources import WeightsStore
from llm_rollout.spec import ReleaseSpec
from llm_rollout.weights.errors import (
    CorruptManifest,
    HubAccessDenied,
    NotEnoughSpace,
    RefusedBeforeDownload,
    RepoNotFound,
    RevisionNotFound,
    StorageError,
    UntrustedFolder,
    WeightsError,
)
from llm_rollout.weights.fetch import WeightsSource, fetch_weights
from llm_rollout.weights.layout import MANIFEST_NAME, RepoLayout
from llm_rollout.weights.verify import verify_published

LOG_EVERY_SECONDS = 10.0  # progress lines in the run log: often enough to see it move
# Retrying cannot fix these: the user must change the spec, the token or the disk. (A cut
# download is not here: a retry resumes from the staged bytes.)
PERMANENT_ERRORS = (
    RefusedBeforeDownload,
    HubAccessDenied,
    RepoNotFound,
    RevisionNotFound,
    NotEnoughSpace,
    StorageError,
    CorruptManifest,
    UntrustedFolder,
)


class LoggedProgress:
    """Progress reported as run-log lines (Dagster has no progress bar)."""

    def __init__(self, log: dg.DagsterLogManager) -> None:
        self.log = log
        self.label, self.total, self.done, self.last = "", 0, 0, 0.0

    def start(self, label: str, total_bytes: int) -> None:
        self.label, self.total, self.done, self.last = label, total_bytes, 0, time.monotonic()
        self.log.info(f"{label}: {total_bytes / 2**20:.1f} MiB")

    def advance(self, done_bytes: int) -> None:
        self.done += done_bytes  # approximate under threads; for display only
        if time.monotonic() - self.last >= LOG_EVERY_SECONDS:
            self.last = time.monotonic()
            self.log.info(f"{self.label}: {self.done / 2**20:.1f} of {self.total / 2**20:.1f} MiB")

    def finish(self) -> None:
        pass


class WeightsConfig(dg.Config):
    """Launchpad options of the weights step."""

    revision: str | None = Field(
        None, description="Branch, tag or 40-hex commit to fetch instead of the spec's revision."
    )


def source_of(spec: ReleaseSpec, revision: str | None = None) -> WeightsSource:
    """The weights source a spec names (at `revision` when one is given)."""
    patterns = tuple(spec.source.allow_patterns) if spec.source.allow_patterns else None
    return WeightsSource(spec.source.repo, revision or spec.source.revision, patterns)


def build_weights_asset(spec: ReleaseSpec) -> dg.AssetsDefinition:
    """The `<model>/weights` asset: materializing it publishes the revision's verified files."""

    @dg.asset(
        key=asset_key(spec, "weights"),
        group_name=group_name(spec),
        kinds={"huggingface", "nfs" if spec.storage.nfs else "pvc"},
        description=(
            f"`{spec.source.repo}` at `{spec.source.revision}`: pinned to a commit, verified "
            "against the Hub's hashes, published atomically."
        ),
        owners=spec.owners,
        code_version=weights_version(spec),
        retry_policy=dg.RetryPolicy(max_retries=2, delay=30),  # reruns resume staged bytes
        tags={"llm-rollout/model": spec.name},
    )
    def weights(
        context: dg.AssetExecutionContext, config: WeightsConfig, weights_store: WeightsStore
    ) -> dg.MaterializeResult:
        try:
            hub = weights_store.hub()
            result = fetch_weights(
                source_of(spec, config.revision),
                weights_store.root_path,
                hub,
                progress=LoggedProgress(context.log),
                before_download=refuse_what_cannot_fit(spec, hub),
            )
        except WeightsError as error:
            permanent = isinstance(error, PERMANENT_ERRORS)
            raise dg.Failure(description=str(error), allow_retries=not permanent) from error
        if not result.hub_reachable:
            context.log.warning("Hub unreachable: using the published copy after re-hashing it")
        return dg.MaterializeResult(
            metadata={
                "repo": spec.source.repo,
                "revision": config.revision or spec.source.revision,
                "commit": result.commit,
                "files": len(result.manifest.files),
                "bytes": dg.MetadataValue.int(result.manifest.total_bytes),
                "downloaded_bytes": dg.MetadataValue.int(result.downloaded_bytes),
                "seconds": round(result.seconds, 2),
                "throughput_mib_per_s": round(result.throughput_bytes_per_second / 2**20, 1),
                "already_published": result.already_published,
                "hub_reachable": result.hub_reachable,
                "path": dg.MetadataValue.path(str(result.folder)),
                "manifest": dg.MetadataValue.path(str(result.folder / MANIFEST_NAME)),
            },
            data_version=dg.DataVersion(result.commit),
        )

    return weights


def build_weights_check(spec: ReleaseSpec) -> dg.AssetChecksDefinition:
    """Blocking check: the published folder of the materialized commit matches its manifest."""
    key = asset_key(spec, "weights")

    @dg.asset_check(
        asset=key,
        name="manifest_verifies",
        blocking=True,
        description="Every published file matches the sha256 in its manifest; no extra files.",
    )
    def manifest_verifies(
        context: dg.AssetCheckExecutionContext, weights_store: WeightsStore
    ) -> dg.AssetCheckResult:
        commit = published_commit_of(context, key)
        if commit is None:
            return dg.AssetCheckResult(passed=False, description=NEVER_MATERIALIZED)
        layout = RepoLayout(weights_store.root_path, spec.source.repo)
        try:
            report = verify_published(layout, commit)
        except WeightsError as error:
            return dg.AssetCheckResult(passed=False, description=str(error))
        return dg.AssetCheckResult(
            passed=report.ok,
            description=None if report.ok else "\n".join(report.problems()),
            metadata={
                "commit": commit,
                "files": report.files,
                "rehashed_files": report.rehashed_files,
                "seconds": round(report.seconds, 3),
                "problems": len(report.problems()),
            },
        )

    return manifest_verifies


NEVER_MATERIALIZED = "the weights were never materialized"


def published_commit_of(context: dg.AssetCheckExecutionContext, key: dg.AssetKey) -> str | None:
    """The commit the weights asset `key` last published (its materialization's metadata),
    or None when it never was."""
    event = context.instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    if materialization is None or "commit" not in materialization.metadata:
        return None
    return str(materialization.metadata["commit"].value)
