"""What can go wrong with weights, each saying what failed, for which file and commit, and
what to do about it. Access problems (401/404) are distinct from network problems."""

from __future__ import annotations


class WeightsError(Exception):
    """Base of every weights failure."""


class HubAccessDenied(WeightsError):
    """The Hub refused access (401/403): a gated or private repo without a valid token."""


class RepoNotFound(WeightsError):
    """The repo does not exist on the Hub (or is private and the token cannot see it)."""


class RevisionNotFound(WeightsError):
    """The repo exists but has no such branch, tag or commit."""


class HubUnreachable(WeightsError):
    """The Hub could not be reached or kept failing (connection, timeout, 5xx)."""


class ChecksumMismatch(WeightsError):
    """A file's bytes do not match the hash the Hub published for it."""


class SizeMismatch(WeightsError):
    """A file's size does not match the size the Hub published for it."""


class NotEnoughSpace(WeightsError):
    """The weights root has too little free space for the download."""


class WeightsLocked(WeightsError):
    """Another process holds the repo's lock and did not release it in time."""


class NotPublished(WeightsError):
    """The requested commit has no published, verified folder."""


class StorageError(WeightsError):
    """The weights volume refused a write or a read (read-only mount, permissions, I/O)."""


class RefusedBeforeDownload(WeightsError):
    """A check of the Hub's listing (the release would not fit its GPUs) refused the
    revision before a byte of it was downloaded."""


class CorruptManifest(WeightsError):
    """A published folder's manifest is missing fields, is not JSON, or names unsafe paths."""


class UntrustedFolder(WeightsError):
    """A commit folder exists without a manifest: it was not published by llm-rollout (or its
    manifest was deleted), so nothing in it can be trusted or overwritten."""
