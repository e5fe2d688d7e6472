"""The sandbox Kubernetes API over HTTP: enough of it for the `kubernetes` Python client,
kubectl and Prometheus-style discovery to work unmodified."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import yaml

from sandbox.cluster import openapi, rbac, resources, tables
from sandbox.cluster.faults import ApiFaultBook
from sandbox.cluster.patches import json_patch, merge_patch, strategic_merge_patch
from sandbox.cluster.resources import Resource
from sandbox.cluster.store import ApiError, ObjectStore, WatchEvent, parse_version
from sandbox.httpserver import BackgroundServer

_REASONS = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}
WATCH_DEFAULT_TIMEOUT = 300.0  # seconds a watch stays open without timeoutSeconds
KUBERNETES_VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-llm-rollout-sandbox",
    "platform": "linux/amd64",
}
# (namespace, pod, container, tail_lines) → the container's log text
LogReader = Callable[[str, str, str | None, int | None], str]


class ApiHandler(BaseHTTPRequestHandler):
    """Routes one request to the store."""

    protocol_version = "HTTP/1.1"
    store: ClassVar[ObjectStore]
    faults: ClassVar[ApiFaultBook]
    read_log: ClassVar[LogReader]
    stopping: ClassVar[threading.Event]
    auth: ClassVar[rbac.Authenticator]
    user: rbac.User

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- routing ------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        parts = [part for part in url.path.split("/") if part]
        faults = (
            self.faults.take(lambda fault: fault.matches(method, url.path))
            if parts[:1] in (["api"], ["apis"])
            else []
        )
        try:
            body = self._body()
            for fault in faults:
                if fault.kind == "slow":
                    time.sleep(fault.delay_seconds)
                elif fault.kind == "status":
                    raise ApiError(
                        fault.status,
                        _REASONS.get(fault.status, "InternalError"),
                        f"injected {fault.status}",
                    )
            self.user = self.auth.user(self.headers.get("Authorization"))
            if not _is_resource_path(parts):  # discovery, /version, /healthz …
                self._authorize(rbac.Request(method.lower(), url.path))
            if self._discovery(method, parts):
                return
            if any(fault.kind == "lose_response" for fault in faults):
                self._lose_response(method, parts, query, body)
                return
            self._resource_request(method, parts, query, body)
        except ApiError as error:
            self._json(error.status(), error.code)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _lose_response(
        self, method: str, parts: list[str], query: dict[str, str], body: Any
    ) -> None:
        """Do the request, then hang up instead of answering."""
        real_json, real_text = self._json, self._text
        self._json = lambda *args, **kwargs: None  # type: ignore[method-assign]
        self._text = lambda *args, **kwargs: None  # type: ignore[method-assign]
        try:
            self._resource_request(method, parts, query, body)
        finally:
            self._json, self._text = real_json, real_text  # type: ignore[method-assign]
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _discovery(self, method: str, parts: list[str]) -> bool:
        if method != "GET":
            return False
        if parts == ["version"]:
            self._json(KUBERNETES_VERSION)
        elif parts == ["api"]:
            self._json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": self.headers.get("Host", "")}
                    ],
                }
            )
        elif parts == ["apis"]:
            groups = [
                {
                    "name": name,
                    "versions": [{"groupVersion": f"{name}/{v}", "version": v} for v in versions],
                    "preferredVersion": {
                        "groupVersion": f"{name}/{versions[0]}",
                        "version": versions[0],
                    },
                }
                for name, versions in resources.group_versions().items()
            ]
            self._json({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        elif parts == ["api", "v1"]:
            self._json(resources.discovery_list("", "v1"))
        elif len(parts) == 3 and parts[0] == "apis":
            if parts[1] not in resources.group_versions():
                raise ApiError(404, "NotFound", f"the server could not find {self.path}")
            self._json(resources.discovery_list(parts[1], parts[2]))
        elif len(parts) == 2 and parts[0] == "apis":
            versions = resources.group_versions().get(parts[1])
            if not versions:
                raise ApiError(404, "NotFound", f"the server could not find {self.path}")
            self._json(
                {
                    "kind": "APIGroup",
                    "apiVersion": "v1",
                    "name": parts[1],
                    "versions": [
                        {"groupVersion": f"{parts[1]}/{v}", "version": v} for v in versions
                    ],
                }
            )
        elif parts[:1] == ["openapi"]:
            self._openapi(parts)
        elif parts in (["healthz"], ["readyz"], ["livez"]):
            self._text("ok")
        else:
            return False
        return True

    def _openapi(self, parts: list[str]) -> None:
        """/openapi/v2 and /openapi/v3[/<group version>] (sandbox/cluster/openapi.py)."""
        accept = self.headers.get("Accept") or "*/*"
        if parts == ["openapi", "v2"]:
            if not any(t in accept for t in ("json", "*/*")):
                # kubectl asks for the gnostic protobuf form, which the sandbox cannot encode
                raise ApiError(
                    406, "NotAcceptable", f"only application/json is served, not {accept}"
                )
            self._raw(openapi.v2_document())
            return
        if parts == ["openapi", "v3"]:
            self._json(openapi.v3_discovery())
            return
        document = (
            openapi.v3_document("/".join(parts[2:])) if parts[:2] == ["openapi", "v3"] else None
        )
        if document is None:
            raise ApiError(404, "NotFound", f"the server could not find {self.path}")
        self._raw(document)

    def _check_fields(
        self, resource: Resource, namespace: str, name: str, body: Any, query: dict[str, str]
    ) -> None:
        """Strict field validation (fieldValidation=Strict, as kubectl sends it once the
        OpenAPI documents declare the parameter): a 400 naming every unknown field, worded as
        the API server words it: structured-merge-diff's "field not declared in schema" for
        an apply, the strict decoder's "unknown field" otherwise."""
        directive = query.get("fieldValidation", "")
        if directive not in ("", "Ignore", "Warn", "Strict"):
            raise ApiError(
                400,
                "BadRequest",
                f'fieldValidation: Unsupported value: "{directive}": supported values: '
                '"Ignore", "Strict", "Warn"',
            )
        if directive != "Strict" or not isinstance(body, dict):
            return
        unknown = openapi.unknown_fields(resource, body)
        if not unknown:
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type == "application/apply-patch+yaml":
            where = f"{namespace}/{name}" if namespace else name
            raise ApiError(
                400,
                "BadRequest",
                f"failed to create typed patch object ({where}; {resource.api_version}, "
                f"Kind={resource.kind}): {unknown[0]}: field not declared in schema",
            )
        fields = ", ".join(f'unknown field "{path.lstrip(".")}"' for path in unknown)
        raise ApiError(
            400,
            "BadRequest",
            f'{resource.kind} in version "{resource.version}" cannot be handled as a '
            f"{resource.kind}: strict decoding error: {fields}",
        )

    def _resource_request(
        self, method: str, parts: list[str], query: dict[str, str], body: Any
    ) -> None:
        resource, namespace, name, sub = self._parse(parts)
        self._authorize(
            rbac.Request(
                _verb(method, name, query),
                "/" + "/".join(parts),
                resource.group,
                resource.plural,
                sub or "",
                name if resource.plural == "namespaces" and name else namespace or "",
                name or "",
            )
        )
        manager = query.get("fieldManager") or self._default_manager()
        dry = _dry_run(query, body if method == "DELETE" else None)
        if method in ("POST", "PUT", "PATCH") and sub in (None, "status"):
            self._check_fields(resource, namespace or "", name or "", body, query)
        store = self.store
        if method == "GET" and name is None:
            if query.get("watch", "").lower() in ("true", "1"):
                self._watch(resource, namespace, query)
                return
            items, revision = store.list_at(
                resource,
                namespace,
                query.get("labelSelector"),
                query.get("fieldSelector"),
                query.get("resourceVersion"),
                query.get("resourceVersionMatch"),
            )
            if self._table_version():
                self._json(self._table(resource, items, str(revision), query))
                return
            self._json(
                {
                    "kind": f"{resource.kind}List",
                    "apiVersion": resource.api_version,
                    "metadata": {"resourceVersion": str(revision)},
                    "items": items,
                }
            )
        elif method == "GET" and sub == "log":
            tail = int(query["tailLines"]) if "tailLines" in query else None
            store.get(resource, namespace or "", name or "")
            self._text(self.read_log(namespace or "", name or "", query.get("container"), tail))
        elif method == "GET" and sub == "scale":
            self._json(_scale_of(resource, store.get(resource, namespace or "", name or "")))
        elif method == "GET" and sub is None and self._table_version():
            obj = store.get(resource, namespace or "", name or "")
            self._json(self._table(resource, [obj], obj["metadata"]["resourceVersion"], query))
        elif method == "GET":
            self._json(store.get(resource, namespace or "", name or ""))
        elif method == "POST" and sub == "token" and resource.plural == "serviceaccounts":
            self._json(self._token_request(namespace or "", name or "", body), 201)
        elif method == "POST" and name is None:
            self._json(store.create(resource, namespace or "", body, manager, dry), 201)
        elif method == "PUT" and sub == "scale":
            scaled = self._set_replicas(resource, namespace, name, body, manager, dry)
            self._json(_scale_of(resource, scaled))
        elif method == "PUT":
            self._json(
                store.replace(resource, namespace or "", name or "", body, manager, sub, dry)
            )
        elif method == "PATCH":
            self._json(
                self._patch(resource, namespace or "", name or "", sub, body, query, manager, dry)
            )
        elif method == "DELETE" and name is not None:
            deleted = store.delete(resource, namespace or "", name, dry_run=dry)
            self._json(deleted)
        else:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {self.path}")

    def _parse(self, parts: list[str]) -> tuple[Resource, str | None, str | None, str | None]:
        """(resource, namespace, name, subresource) from a resource URL."""
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({self.path})"
            )
        namespace = None
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        elif rest[:1] == ["namespaces"] and len(rest) == 2:
            rest = ["namespaces", rest[1]]
        resource = resources.find(group, version, rest[0]) if rest else None
        if resource is None:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({self.path})"
            )
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in resource.subresources:
            # a subresource the kind does not declare is not served (a CRD has /scale only
            # when its `subresources.scale` is set)
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({self.path})"
            )
        if not resource.namespaced:
            namespace = ""
        return resource, namespace, name, sub

    def _patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        sub: str | None,
        body: Any,
        query: dict[str, str],
        manager: str,
        dry: bool = False,
    ) -> Any:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type == "application/apply-patch+yaml":
            if not self._exists(resource, namespace, name):
                # an apply that creates needs `create` too (handlers/patch.go: the create
                # path of a patch is authorized as a create)
                self._authorize(
                    rbac.Request(
                        "create",
                        self.path,
                        resource.group,
                        resource.plural,
                        "",
                        namespace,
                        name,
                    )
                )
            force = query.get("force", "").lower() in ("true", "1")
            return self.store.apply(resource, namespace, name, body, manager, force, dry)
        if sub == "scale":
            current = _scale_of(resource, self.store.get(resource, namespace, name))
            patched = _apply_patch(content_type, current, body)
            scaled = self._set_replicas(resource, namespace, name, patched, manager, dry)
            return _scale_of(resource, scaled)
        live = self.store.get(resource, namespace, name)
        patched = _apply_patch(content_type, live, body)
        patched.setdefault("metadata", {}).pop("resourceVersion", None)
        sent_version = (
            (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
        )
        if sent_version:
            patched["metadata"]["resourceVersion"] = sent_version
        return self.store.replace(resource, namespace, name, patched, manager, sub, dry)

    def _authorize(self, request: rbac.Request) -> None:
        rbac.authorize(self.store, self.user, request)

    def _exists(self, resource: Resource, namespace: str, name: str) -> bool:
        try:
            self.store.get(resource, namespace, name)
        except ApiError:
            return False
        return True

    def _token_request(self, namespace: str, name: str, body: Any) -> dict[str, Any]:
        """The TokenRequest API (what `kubectl create token` calls)."""
        expiry = int((body or {}).get("spec", {}).get("expirationSeconds") or 3600)
        token = self.auth.issue(namespace, name)
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + expiry))
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": expiry},
            "status": {"token": token, "expirationTimestamp": expires},
        }

    def _set_replicas(
        self,
        resource: Resource,
        namespace: str | None,
        name: str | None,
        scale: Any,
        manager: str,
        dry: bool = False,
    ) -> Any:
        live = self.store.get(resource, namespace or "", name or "")
        live["spec"]["replicas"] = int(scale["spec"]["replicas"])
        # recorded as its own managedFields entry (subresource "scale"), as the API server's
        # ScaleHandler does (k8s.io/apimachinery/pkg/util/managedfields/internal/scalehandler.go)
        return self.store.replace(
            resource, namespace or "", name or "", live, manager, "scale", dry
        )

    def _watch(self, resource: Resource, namespace: str | None, query: dict[str, str]) -> None:
        since = query.get("resourceVersion")
        timeout = float(query.get("timeoutSeconds") or WATCH_DEFAULT_TIMEOUT)
        events: Iterator[WatchEvent] = self.store.watch(
            resource,
            namespace,
            parse_version(since) if since not in (None, "", "0") else None,
            query.get("labelSelector"),
            query.get("fieldSelector"),
            timeout,
            self.stopping,
            initial_events_bookmark=query.get("sendInitialEvents", "").lower() == "true",
            bookmarks=query.get("allowWatchBookmarks", "").lower() in ("true", "1"),
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        as_table = self._table_version()
        try:
            for event in events:
                obj = event.obj
                if as_table and event.type != "BOOKMARK":
                    # each event's object as a one-row Table (handlers/watch.go encodes watch
                    # events through the same transformObject as a GET)
                    version = obj["metadata"].get("resourceVersion", "")
                    obj = self._table(resource, [obj], version, query)
                self._chunk({"type": event.type, "object": obj})
        except ApiError as error:
            # Once the request is authorized and its resourceVersion parsed, a watch error
            # (410 Expired for a too old resourceVersion) is one ERROR event on a 200 stream,
            # not a direct error (k8s.io/apiserver/pkg/storage/cacher/cacher.go `Watch`:
            # "other errors must fail with a watch event of type ERROR").
            self._chunk({"type": "ERROR", "object": error.status()})
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def _table_version(self) -> str | None:
        return tables.wants_table(self.headers.get("Accept"))

    def _table(
        self, resource: Resource, items: list[Any], version: str, query: dict[str, str]
    ) -> dict[str, Any]:
        """Server-side printing, as `kubectl get` asks for it (see sandbox/cluster/tables.py)."""
        return tables.table(
            resource,
            items,
            version,
            self._table_version() or "v1",
            query.get("includeObject") or "Metadata",
        )

    def _chunk(self, event: dict[str, Any]) -> None:
        line = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.flush()

    # -- bodies and answers -------------------------------------------------------------

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        raw = self.rfile.read(length)
        try:
            return (
                yaml.safe_load(raw)
                if b"yaml" in (self.headers.get("Content-Type") or "").encode()
                else json.loads(raw)
            )
        except (ValueError, yaml.YAMLError) as error:
            raise ApiError(400, "BadRequest", f"cannot parse the request body: {error}") from error

    def _default_manager(self) -> str:
        agent = self.headers.get("User-Agent") or "unknown"
        return agent.split("/")[0]

    def _json(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _raw(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _text(self, text: str) -> None:
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _is_resource_path(parts: list[str]) -> bool:
    return (parts[:2] == ["api", "v1"] and len(parts) > 2) or (
        parts[:1] == ["apis"] and len(parts) > 3
    )


def _verb(method: str, name: str | None, query: dict[str, str]) -> str:
    """The authorizer's verb for a request (k8s.io/apiserver/pkg/endpoints/request
    requestinfo.go)."""
    if method == "GET":
        if query.get("watch", "").lower() in ("true", "1"):
            return "watch"
        return "get" if name else "list"
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def _dry_run(query: dict[str, str], delete_options: Any) -> bool:
    """Whether the request asks for dryRun=All (in the query, or in a DELETE's DeleteOptions
    body as kubectl sends it). "All" is the only value the API server accepts
    (k8s.io/apimachinery/pkg/apis/meta/v1/validation ValidateDryRun)."""
    values: list[str] = [query["dryRun"]] if "dryRun" in query else []
    if isinstance(delete_options, dict):
        values += list(delete_options.get("dryRun") or [])
    for value in values:
        if value != "All":
            raise ApiError(
                400,
                "BadRequest",
                f'dryRun: Unsupported value: "{value}": supported values: "All"',
            )
    return bool(values)


def _apply_patch(content_type: str, live: Any, body: Any) -> Any:
    if content_type == "application/json-patch+json":
        return json_patch(live, body)
    if content_type == "application/strategic-merge-patch+json":
        return strategic_merge_patch(live, body)
    if content_type == "application/merge-patch+json":
        return merge_patch(live, body)
    raise ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format: {content_type}",
    )


def _scale_of(resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """The autoscaling/v1 Scale of `obj`. A custom resource's comes from the paths its CRD
    names (apiextensions-apiserver pkg/registry/customresource/etcd.go,
    scaleFromCustomResource): the LeaderWorkerSet's `subresources.scale` is specReplicasPath
    .spec.replicas, statusReplicasPath .status.replicas, labelSelectorPath
    .status.hpaPodSelector (kubernetes-sigs/lws api/leaderworkerset/v1, its kubebuilder scale
    marker): the leaders, a string as the controller wrote it."""
    metadata = obj["metadata"]
    if resource.kind == "LeaderWorkerSet":
        selector = str(obj.get("status", {}).get("hpaPodSelector", ""))
    else:
        match = obj["spec"].get("selector", {}).get("matchLabels", {})
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: metadata[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in metadata
        },
        "spec": {"replicas": obj["spec"].get("replicas", 1)},
        "status": {
            "replicas": obj.get("status", {}).get("replicas", 0),
            "selector": selector,
        },
    }


class ApiServer(BackgroundServer):
    """The API server on a free local port, serving `store`."""

    def __init__(
        self, store: ObjectStore, read_log: LogReader, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.store = store
        self.stopping = threading.Event()
        self.faults = ApiFaultBook()
        self.auth = rbac.Authenticator(store)
        handler = type(
            "BoundApiHandler",
            (ApiHandler,),
            {
                "store": store,
                "faults": self.faults,
                "read_log": staticmethod(read_log),
                "stopping": self.stopping,
                "auth": self.auth,
            },
        )
        super().__init__(handler, host, port)

    def stop(self) -> None:
        self.stopping.set()
        super().stop()
