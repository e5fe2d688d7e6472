"""The OpenAPI documents of the sandbox API (`/openapi/v2`, `/openapi/v3` and its per
group-version documents), and strict field validation against the same schemas.

The schemas are not written by hand: they are the Kubernetes JSON schemas that
`kubernetes-validate` ships (the ones `k8s/validation.py` validates our manifests against),
turned back into the OpenAPI form the API server publishes (kube-openapi: `#/definitions/` in
v2, `#/components/schemas/` in v3, `int-or-string` for IntOrString, a string for Quantity).
Paths carry the operations, `x-kubernetes-group-version-kind` and query parameters kubectl
looks for: it sends `fieldValidation=Strict` only when the PATCH operation of a kind declares
that parameter (kubectl/pkg/cmd/util/... `QueryParamVerifierV3.HasSupport`), and then leaves
validation to the server."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import kubernetes_validate

from sandbox.cluster import resources
from sandbox.cluster.resources import Resource

Schema = dict[str, Any]
# The schema set matching the Kubernetes version the sandbox reports (api.KUBERNETES_VERSION).
SCHEMA_VERSION = "v1.31.0"
SCHEMA_DIR = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
# The LeaderWorkerSet CRD's schema, vendored with the product (k8s/schemas/README.md).
LWS_SCHEMA = (
    Path(__file__).parents[2]
    / "llm_rollout"
    / "k8s"
    / "schemas"
    / "leaderworkerset.x-k8s.io_v1_leaderworkerset.json"
)


@functools.cache
def json_schema_definitions() -> dict[str, Schema]:
    """kubernetes-validate's definitions (JSON Schema 2020-12, `#/$defs/` references), and
    the CRDs the sandbox serves (their openAPIV3Schema, as an API server publishes a CRD's)."""
    path = SCHEMA_DIR / f"{SCHEMA_VERSION}-local" / "_definitions.json"
    found: dict[str, Schema] = json.loads(path.read_text())["$defs"]
    lws = json.loads(LWS_SCHEMA.read_text())
    lws["x-kubernetes-group-version-kind"] = [
        {"group": "leaderworkerset.x-k8s.io", "version": "v1", "kind": "LeaderWorkerSet"}
    ]
    found["io.x-k8s.leaderworkerset.v1.LeaderWorkerSet"] = lws
    return found


def _to_openapi(node: Any, prefix: str) -> Any:
    """A JSON Schema node in OpenAPI form: one `type` (the JSON schemas add "null"), and
    references under `prefix`."""
    if isinstance(node, list):
        return [_to_openapi(item, prefix) for item in node]
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = prefix + value.removeprefix("#/$defs/")
        elif key == "type" and isinstance(value, list):
            out[key] = next(t for t in value if t != "null")
        elif key == "properties":
            out[key] = {name: _to_openapi(child, prefix) for name, child in value.items()}
        else:
            out[key] = _to_openapi(value, prefix)
    return out


@functools.cache
def definitions(prefix: str) -> dict[str, Schema]:
    """Every definition in OpenAPI form (kube-openapi's own shapes for IntOrString and
    Quantity; no enum on apiVersion/kind, which the JSON schemas add)."""
    converted: dict[str, Schema] = {}
    for name, schema in json_schema_definitions().items():
        out = _to_openapi(schema, prefix)
        for field in ("apiVersion", "kind"):
            (out.get("properties") or {}).get(field, {}).pop("enum", None)
        converted[name] = out
    converted[INT_OR_STRING] = {"type": "string", "format": "int-or-string"}
    converted[QUANTITY] = {
        "type": "string",
        "description": json_schema_definitions()[QUANTITY].get("description", ""),
    }
    return converted


def definition_name(resource: Resource) -> str | None:
    """The definition of a served kind (by its x-kubernetes-group-version-kind)."""
    for name, schema in json_schema_definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            if (gvk.get("group"), gvk.get("version"), gvk.get("kind")) == (
                resource.group,
                resource.version,
                resource.kind,
            ):
                return name
    return None


def _referenced(names: list[str], prefix: str) -> dict[str, Schema]:
    """`names` and every definition they reference, transitively."""
    every = definitions(prefix)
    found: dict[str, Schema] = {}
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in found or name not in every:
            continue
        found[name] = every[name]
        pending += [ref.removeprefix(prefix) for ref in _refs(every[name])]
    return dict(sorted(found.items()))


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def _parameter(name: str, description: str, kind: str = "string") -> Schema:
    return {"name": name, "in": "query", "description": description, "type": kind}


WRITE_PARAMETERS = (
    _parameter("dryRun", "When present, indicates that modifications should not be persisted."),
    _parameter(
        "fieldManager",
        "fieldManager is a name associated with the actor or entity that is making these changes.",
    ),
    _parameter(
        "fieldValidation",
        "fieldValidation instructs the server on how to handle "
        "objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. "
        "Valid values are: Ignore, Warn (the default), Strict.",
    ),
)
FORCE = _parameter("force", 'Force is going to "force" Apply requests.', "boolean")
PATCH_TYPES = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
]


def _operations(resource: Resource, ref: str | None, v3: bool) -> dict[str, Schema]:
    """The paths of one resource: the collection and one object, with their operations."""
    gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    root = "/api/v1" if not resource.group else f"/apis/{resource.group}/{resource.version}"
    scope = "/namespaces/{namespace}" if resource.namespaced else ""
    name = f"{resource.kind}"
    body = {"$ref": ref} if ref else {"type": "object"}

    def op(
        action: str,
        verb: str,
        parameters: tuple[Schema, ...] = (),
        with_body: bool = False,
        patch: bool = False,
    ) -> Schema:
        operation: Schema = {
            "operationId": f"{verb}{name}",
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "responses": {"200": {"description": "OK"}},
        }
        if v3:
            operation["parameters"] = [
                {
                    "name": p["name"],
                    "in": "query",
                    "description": p["description"],
                    "schema": {"type": p["type"], "uniqueItems": True},
                }
                for p in parameters
            ]
            operation["responses"]["200"]["content"] = {"application/json": {"schema": body}}
            if with_body:
                types = PATCH_TYPES if patch else ["*/*"]
                operation["requestBody"] = {
                    "content": {
                        t: {"schema": {"type": "object"} if patch else body} for t in types
                    },
                    "required": True,
                }
        else:
            operation["parameters"] = list(parameters)
            operation["responses"]["200"]["schema"] = body
            if with_body:
                operation["parameters"].append(
                    {
                        "name": "body",
                        "in": "body",
                        "required": True,
                        "schema": {"type": "object"} if patch else body,
                    }
                )
                if patch:
                    operation["consumes"] = PATCH_TYPES
        return operation

    collection = f"{root}{scope}/{resource.plural}"
    return {
        collection: {
            "get": op("list", "list"),
            "post": op("post", "create", WRITE_PARAMETERS, with_body=True),
        },
        collection + "/{name}": {
            "get": op("get", "read"),
            "put": op("put", "replace", WRITE_PARAMETERS, with_body=True),
            "patch": op("patch", "patch", (*WRITE_PARAMETERS, FORCE), with_body=True, patch=True),
            "delete": op("delete", "delete", WRITE_PARAMETERS[:1]),
        },
    }


@functools.cache
def v2_document() -> bytes:
    """The Swagger 2.0 document of every served kind, as JSON."""
    prefix = "#/definitions/"
    paths: dict[str, Schema] = {}
    names: list[str] = []
    for resource in resources.RESOURCES:
        name = definition_name(resource)
        names += [name] if name else []
        paths |= _operations(resource, prefix + name if name else None, v3=False)
    document = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": SCHEMA_VERSION},
        "paths": paths,
        "definitions": _referenced(names, prefix),
    }
    return json.dumps(document).encode()


def group_version_paths() -> list[str]:
    """The v3 discovery keys: "api/v1", "apis/apps/v1", …"""
    keys = {"api/v1"} | {
        f"apis/{group}/{version}"
        for group, versions in resources.group_versions().items()
        for version in versions
    }
    return sorted(keys)


@functools.cache
def v3_document(group_version_path: str) -> bytes | None:
    """The OpenAPI 3.0 document of one group version ("apis/apps/v1"), as JSON."""
    if group_version_path not in group_version_paths():
        return None
    prefix = "#/components/schemas/"
    paths: dict[str, Schema] = {}
    names: list[str] = []
    for resource in resources.RESOURCES:
        root = "api/v1" if not resource.group else f"apis/{resource.group}/{resource.version}"
        if root != group_version_path:
            continue
        name = definition_name(resource)
        names += [name] if name else []
        paths |= _operations(resource, prefix + name if name else None, v3=True)
    document = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": SCHEMA_VERSION},
        "paths": paths,
        "components": {"schemas": _referenced(names, prefix)},
    }
    return json.dumps(document).encode()


def v3_discovery() -> dict[str, Any]:
    """/openapi/v3: each group version's document, by a URL that changes with its content
    (the `hash` query, as the API server gives it, so that kubectl's cache stays right)."""
    paths = {}
    for key in group_version_paths():
        document = v3_document(key) or b""
        digest = hashlib.sha512(document).hexdigest()[:128].upper()
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}


def unknown_fields(resource: Resource, obj: Any) -> list[str]:
    """The paths (".spec.foo") of fields `obj` has that its kind's schema does not declare, as
    strict field validation finds them."""
    name = definition_name(resource)
    if name is None or not isinstance(obj, dict):
        return []
    found: list[str] = []
    _walk(json_schema_definitions()[name], obj, "", found)
    return found


def _resolve(schema: Schema) -> Schema:
    while "$ref" in schema:
        schema = json_schema_definitions()[schema["$ref"].removeprefix("#/$defs/")]
    return schema


def _walk(schema: Schema, value: Any, path: str, found: list[str]) -> None:
    schema = _resolve(schema)
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            if key.startswith("$"):  # strategic merge patch directives ($patch, $setElementOrder/…)
                continue
            if properties is not None and key in properties:
                _walk(properties[key], child, f"{path}.{key}", found)
            elif isinstance(extra, dict):
                _walk(extra, child, f"{path}.{key}", found)
            elif properties is not None:
                found.append(f"{path}.{key}")
            # no properties and no additionalProperties: free-form (FieldsV1, RawExtension)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _walk(schema["items"], item, f"{path}[{index}]", found)
