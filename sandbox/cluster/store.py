"""The sandbox API server's storage: objects in memory with resourceVersion, generation,
field ownership, owner-reference garbage collection, and a watchable event log."""

from __future__ import annotations

import bisect
import contextlib
import json
import pickle
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.cluster import fieldmanagers
from sandbox.cluster.defaults import apply_defaults
from sandbox.cluster.resources import RESOURCES, Resource, by_kind
from sandbox.cluster.selectors import field_matcher, label_matcher

Obj = dict[str, Any]
ObjList = list[Obj]  # `list` is shadowed inside ObjectStore by its method
Key = tuple[str, str, str]  # (resource.qualified, namespace, name)
# How much watch history the sandbox keeps, as the API server's watch cache does
# (k8s.io/apiserver/pkg/storage/cacher/watch_cache.go): every event of the last
# `eventFreshDuration` (75 s), and never fewer than `defaultLowerBoundCapacity` (100) events, nor
# more than `defaultUpperBoundCapacity` (100 * 1024). A watch from an older resourceVersion gets
# 410 Expired, so clients must handle it (relist) here as they must against a real cluster.
HISTORY_SECONDS = 75.0
HISTORY_MIN_EVENTS = 100
EVENT_LOG_LIMIT = 100 * 1024
# A watch that asked for bookmarks gets one this often (the cacher's defaultBookmarkFrequency),
# so that a quiet watch can resume from a resourceVersion still inside the kept history.
BOOKMARK_SECONDS = 60.0
# How long a list waits for a resourceVersion newer than the store's before a 504 (the watch
# cache's blockTimeout).
TOO_LARGE_WAIT_SECONDS = 3.0


def clone(obj: Any) -> Any:
    """A deep copy of stored JSON-like data, several times faster than `copy.deepcopy` (every
    read copies, and the controllers read every object on each pass)."""
    return pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))


class ApiError(Exception):
    """An API error answered as a Kubernetes Status object."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def not_found(resource: Resource, name: str) -> ApiError:
    details = {"name": name, "group": resource.group, "kind": resource.plural}
    return ApiError(404, "NotFound", f'{resource.qualified} "{name}" not found', details)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    """One change: ADDED, MODIFIED or DELETED, with the object as it then was."""

    resource_version: int
    type: str
    resource: Resource
    obj: Obj
    recorded_at: float = 0.0  # time.monotonic() when it happened


def expired(message: str) -> ApiError:
    """410 Expired, as `errors.NewResourceExpired` (k8s.io/apimachinery/pkg/api/errors)."""
    return ApiError(410, "Expired", message)


class ObjectStore:
    """Thread-safe storage of every object of the sandbox cluster."""

    def __init__(self) -> None:
        self._objects: dict[Key, Obj] = {}
        self._resources: dict[str, Resource] = {r.qualified: r for r in RESOURCES}
        self._events: list[WatchEvent] = []
        self._revision = 0
        self._compacted = 0  # history up to this revision is gone (see `compact`)
        self._changed = threading.Condition()
        self._dry = False  # inside a dryRun=All request (only ever set under the lock)
        for namespace in ("default", "kube-system"):
            self.create(self.resource("namespaces"), "", {"metadata": {"name": namespace}})

    def resource(self, qualified: str) -> Resource:
        return self._resources[qualified]

    @property
    def revision(self) -> int:
        """The latest resourceVersion: it moves on every write, and only then."""
        return self._revision

    # -- reads --------------------------------------------------------------------------

    def get(self, resource: Resource, namespace: str, name: str) -> Obj:
        with self._changed:
            obj = self._objects.get((resource.qualified, namespace, name))
            if obj is None:
                raise not_found(resource, name)
            return clone(obj)

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], int]:
        """Matching objects (every namespace when `namespace` is None) and the revision."""
        labels, fields = label_matcher(label_selector), field_matcher(field_selector)
        with self._changed:
            wanted = sorted(
                (key, obj)
                for key, obj in self._objects.items()
                if key[0] == resource.qualified and (namespace is None or key[1] == namespace)
            )
            items = [
                clone(obj)
                for _, obj in wanted
                if labels(obj["metadata"].get("labels") or {}) and fields(obj)
            ]
            return items, self._revision

    def list_at(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        resource_version: str | None,
        match: str | None,
    ) -> tuple[ObjList, int]:
        """A list honouring `resourceVersion` and `resourceVersionMatch` as the API server does
        (https://kubernetes.io/docs/reference/using-api/api-concepts/#the-resourceversion-parameter):
        unset or "0" is any version (the latest here); NotOlderThan (also the meaning of a bare
        resourceVersion) waits up to 3 s for a newer one, then 504 (watch_cache.go
        `waitUntilFreshAndBlock`); Exact is served only at the latest revision, since the
        sandbox keeps no snapshots, and is 410 when older (etcd3/errors.go: "The
        resourceVersion for the provided list is too old.")."""
        if match and not resource_version:
            raise ApiError(
                400,
                "BadRequest",
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless "
                "resourceVersion is provided",
            )
        if match not in (None, "", "Exact", "NotOlderThan"):
            raise ApiError(
                400,
                "BadRequest",
                f'resourceVersionMatch: Unsupported value: "{match}": supported values: '
                '"Exact", "NotOlderThan"',
            )
        wanted = parse_version(resource_version) if resource_version else 0
        if match == "Exact" and wanted == 0:
            raise ApiError(
                400,
                "BadRequest",
                'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for '
                'resourceVersion "0"',
            )
        if wanted:
            deadline = time.monotonic() + TOO_LARGE_WAIT_SECONDS
            with self._changed:
                while self._revision < wanted and time.monotonic() < deadline:
                    self._changed.wait(timeout=max(0.0, deadline - time.monotonic()))
                if self._revision < wanted:
                    # storage.NewTooLargeResourceVersionError
                    raise ApiError(
                        504,
                        "Timeout",
                        f"Too large resource version: {wanted}, current: {self._revision}",
                        {
                            "causes": [
                                {
                                    "reason": "ResourceVersionTooLarge",
                                    "message": "Too large resource version",
                                }
                            ],
                            "retryAfterSeconds": 1,
                        },
                    )
                if match == "Exact" and wanted != self._revision:
                    raise expired("The resourceVersion for the provided list is too old.")
        return self.list(resource, namespace, label_selector, field_selector)

    def compact(self) -> None:
        """Forget all watch history, as an etcd compaction followed by a watch-cache relist
        does: a watch from any resourceVersion before now gets 410 Expired."""
        with self._changed:
            self._events.clear()
            self._compacted = self._revision

    # -- writes -------------------------------------------------------------------------

    def create(
        self,
        resource: Resource,
        namespace: str,
        obj: Obj,
        manager: str = "",
        dry_run: bool = False,
    ) -> Obj:
        obj = clone(obj)
        metadata = obj.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        name = metadata.get("name")
        if not name:
            raise ApiError(422, "Invalid", f"{resource.kind}: metadata.name: Required value")
        with self._changed, self._dry_run(dry_run):
            self._check_namespace(resource, namespace)
            key = (resource.qualified, namespace, name)
            if key in self._objects:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{resource.qualified} "{name}" already exists',
                    {"name": name, "group": resource.group, "kind": resource.plural},
                )
            obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
            apply_defaults(resource.kind, obj)
            if resource.namespaced:
                metadata["namespace"] = namespace
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = now_iso()
            if resource.has_status:
                metadata["generation"] = 1
            if manager:
                fieldmanagers.record_update(None, obj, manager)
            return self._commit(resource, key, obj, "ADDED")

    def replace(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        obj: Obj,
        manager: str = "",
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """PUT: the whole object (or its status), optimistic on metadata.resourceVersion."""
        with self._changed, self._dry_run(dry_run):
            live = self._live(resource, namespace, name)
            sent = obj.get("metadata", {}).get("resourceVersion")
            if sent and sent != live["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object '
                    "has been modified; please apply your changes to the latest version and try "
                    "again",
                    {"name": name, "group": resource.group, "kind": resource.plural},
                )
            return self._update(resource, live, clone(obj), manager, subresource)

    def apply(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        applied: Obj,
        manager: str,
        force: bool,
        dry_run: bool = False,
    ) -> Obj:
        """Server-side apply: create or merge, with field-manager conflict detection."""
        if not manager:
            raise ApiError(
                422,
                "Invalid",
                "PATCH, fieldManager: Required value: is required for apply patch",
            )
        applied = clone(applied)
        applied.setdefault("metadata", {})["name"] = name
        with self._changed, self._dry_run(dry_run):
            key = (resource.qualified, namespace, name)
            live = self._objects.get(key)
            try:
                merged = fieldmanagers.apply(live, applied, manager, force)
            except fieldmanagers.ApplyConflict as conflict:
                # errors.NewApplyConflict: the causes only, no name or kind in the details
                raise ApiError(
                    409, "Conflict", str(conflict), {"causes": conflict.causes}
                ) from conflict
            if live is None:
                owners = merged["metadata"].pop("managedFields")
                created = self.create(resource, namespace, merged, dry_run=dry_run)
                created["metadata"]["managedFields"] = owners
                if not dry_run:
                    self._objects[key]["metadata"]["managedFields"] = owners
                return created
            return self._update(resource, clone(live), merged, "", None)

    def delete(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        graceful: bool = True,
        dry_run: bool = False,
    ) -> Obj:
        """Delete an object; a running pod is only marked, and its kubelet finishes the job."""
        with self._changed, self._dry_run(dry_run):
            live = self._live(resource, namespace, name)
            if resource.kind == "Pod" and graceful and live.get("spec", {}).get("nodeName"):
                if "deletionTimestamp" not in live["metadata"]:
                    marked = clone(live)
                    marked["metadata"]["deletionTimestamp"] = now_iso()
                    grace = live["spec"].get("terminationGracePeriodSeconds", 30)
                    marked["metadata"]["deletionGracePeriodSeconds"] = grace
                    return self._commit(resource, self._key(live), marked, "MODIFIED")
                return clone(live)
            return self._remove(resource, live)

    def finalize_pod(self, namespace: str, name: str) -> None:
        """The kubelet stopped the pod's containers: remove it for good."""
        with self._changed:
            pods = self.resource("pods")
            live = self._objects.get((pods.qualified, namespace, name))
            if live is not None:
                self._remove(pods, live)

    # -- watching -----------------------------------------------------------------------

    def watch(
        self,
        resource: Resource,
        namespace: str | None,
        since: int | None,
        label_selector: str | None,
        field_selector: str | None,
        timeout: float,
        stopped: threading.Event,
        initial_events_bookmark: bool = False,
        bookmarks: bool = False,
    ) -> Iterator[WatchEvent]:
        """Events after revision `since` (None: the current objects as ADDED first); with
        `bookmarks`, a BOOKMARK every `BOOKMARK_SECONDS` of silence. A `since` older than the
        kept history raises 410 Expired before the first event."""
        labels, fields = label_matcher(label_selector), field_matcher(field_selector)

        def wanted(event: WatchEvent) -> bool:
            obj = event.obj
            return (
                event.resource.qualified == resource.qualified
                and (namespace is None or obj["metadata"].get("namespace", "") == namespace)
                and labels(obj["metadata"].get("labels") or {})
                and fields(obj)
            )

        deadline = time.monotonic() + timeout
        if since is None:
            items, since = self.list(resource, namespace, label_selector, field_selector)
            for item in items:
                yield WatchEvent(int(item["metadata"]["resourceVersion"]), "ADDED", resource, item)
            if initial_events_bookmark:
                # the watch-list protocol (kubectl ≥ 1.32): mark the end of the initial state
                marker = {
                    "apiVersion": resource.api_version,
                    "kind": resource.kind,
                    "metadata": {
                        "resourceVersion": str(since),
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                }
                yield WatchEvent(since, "BOOKMARK", resource, marker)
        else:
            with self._changed:
                self._check_history(since)
        position = since
        last_sent = time.monotonic()
        while not stopped.is_set() and time.monotonic() < deadline:
            bookmark: WatchEvent | None = None
            with self._changed:
                start = bisect.bisect_right(
                    self._events, position, key=lambda event: event.resource_version
                )
                pending = self._events[start:]
                if not pending and bookmarks and time.monotonic() - last_sent >= BOOKMARK_SECONDS:
                    position = max(position, self._revision)
                    bookmark = WatchEvent(
                        position, "BOOKMARK", resource, _bookmark(resource, position)
                    )
                elif not pending:
                    self._changed.wait(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                    continue
            if bookmark is not None:  # yielded outside the lock, as every event is
                last_sent = time.monotonic()
                yield bookmark
                continue
            for event in pending:
                position = event.resource_version
                if wanted(event):
                    last_sent = time.monotonic()
                    yield event

    def _check_history(self, since: int) -> None:
        """410 Expired for a watch from a resourceVersion whose events are no longer kept: the
        watch cache's rule `resourceVersion < oldest-1` (watch_cache.go
        `getAllEventsSinceLocked`), where `oldest` is the first kept event, or the revision
        after the last compaction when none was dropped since."""
        if self._events and self._events[0].resource_version > self._compacted + 1:
            oldest = self._events[0].resource_version
        else:
            oldest = self._compacted + 1
        if since < oldest - 1:
            raise expired(f"too old resource version: {since} ({oldest - 1})")

    # -- internals ----------------------------------------------------------------------

    def _key(self, obj: Obj) -> Key:
        resource = by_kind(obj["apiVersion"], obj["kind"])
        assert resource is not None
        return (resource.qualified, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

    def _live(self, resource: Resource, namespace: str, name: str) -> Obj:
        live = self._objects.get((resource.qualified, namespace, name))
        if live is None:
            raise not_found(resource, name)
        return clone(live)

    def _check_namespace(self, resource: Resource, namespace: str) -> None:
        if not resource.namespaced:
            return
        if ("namespaces", "", namespace) not in self._objects:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )

    def _update(
        self, resource: Resource, live: Obj, new: Obj, manager: str, subresource: str | None
    ) -> Obj:
        metadata = live["metadata"]
        if subresource == "status":
            result = clone(live)
            result["status"] = new.get("status", {})
            if manager:
                fieldmanagers.record_update(live, result, manager, "status")
        else:
            result = new
            result["apiVersion"], result["kind"] = resource.api_version, resource.kind
            for field in (
                "uid",
                "creationTimestamp",
                "namespace",
                "name",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ):
                if field in metadata:
                    result.setdefault("metadata", {})[field] = metadata[field]
            result["metadata"].pop("resourceVersion", None)
            apply_defaults(resource.kind, result)
            if resource.has_status:
                if "status" in live:
                    result["status"] = live["status"]
                else:
                    result.pop("status", None)
                if _spec_of(result) != _spec_of(live):
                    result["metadata"]["generation"] = metadata.get("generation", 1) + 1
            if manager:
                fieldmanagers.record_update(live, result, manager, subresource or "")
        if _without_version(result) == _without_version(live):
            return clone(self._objects[self._key(live)])  # no-op: no new revision
        return self._commit(resource, self._key(live), result, "MODIFIED")

    @contextlib.contextmanager
    def _dry_run(self, dry_run: bool) -> Iterator[None]:
        """While held (under the lock): validate and answer, but store nothing — the API
        server's dryRun=All (create, update, patch and delete handlers in
        k8s.io/apiserver/pkg/endpoints/handlers run admission and validation, then skip the
        storage write). Nested calls (apply creating) keep the outer setting."""
        outer = self._dry
        self._dry = outer or dry_run
        try:
            yield
        finally:
            self._dry = outer

    def _commit(self, resource: Resource, key: Key, obj: Obj, kind: str) -> Obj:
        if self._dry:
            live = self._objects.get(key)
            if live is not None:  # an update: the version the write would replace
                obj["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            else:  # a create: no version, since nothing was stored
                obj["metadata"].pop("resourceVersion", None)
            return clone(obj)
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        self._objects[key] = obj
        self._record(kind, resource, obj)
        return clone(obj)

    def _remove(self, resource: Resource, live: Obj) -> Obj:
        if self._dry:
            return clone(live)
        key = self._key(live)
        self._objects.pop(key, None)
        self._revision += 1
        live["metadata"]["resourceVersion"] = str(self._revision)
        self._record("DELETED", resource, live)
        uid = live["metadata"]["uid"]
        for dependent in [o for o in self._objects.values() if _owned_by(o, uid)]:
            dependent_resource = by_kind(dependent["apiVersion"], dependent["kind"])
            assert dependent_resource is not None
            if dependent_resource.kind == "Pod" and dependent.get("spec", {}).get("nodeName"):
                marked = clone(dependent)
                marked["metadata"].setdefault("deletionTimestamp", now_iso())
                self._commit(dependent_resource, self._key(marked), marked, "MODIFIED")
            else:
                self._remove(dependent_resource, clone(dependent))
        return clone(live)

    def _record(self, kind: str, resource: Resource, obj: Obj) -> None:
        moment = time.monotonic()
        self._events.append(WatchEvent(self._revision, kind, resource, clone(obj), moment))
        # the sliding window of HISTORY_SECONDS (see there): drop what is both old and beyond
        # the minimum, and anything beyond the upper bound
        drop = max(0, len(self._events) - EVENT_LOG_LIMIT)
        while (
            len(self._events) - drop > HISTORY_MIN_EVENTS
            and moment - self._events[drop].recorded_at > HISTORY_SECONDS
        ):
            drop += 1
        if drop:
            del self._events[:drop]
        self._changed.notify_all()


def parse_version(text: str) -> int:
    try:
        return int(text)
    except ValueError as error:
        # storage.APIObjectVersioner.ParseResourceVersion
        raise ApiError(400, "BadRequest", f'invalid resource version "{text}": {error}') from error


def _bookmark(resource: Resource, revision: int) -> Obj:
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"resourceVersion": str(revision)},
    }


def _spec_of(obj: Obj) -> str:
    rest = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    return json.dumps(rest, sort_keys=True)


def _without_version(obj: Obj) -> str:
    clean = clone(obj)
    clean["metadata"].pop("resourceVersion", None)
    for entry in clean["metadata"].get("managedFields") or []:
        entry.pop("time", None)
    return json.dumps(clean, sort_keys=True)


def _owned_by(obj: Obj, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])
