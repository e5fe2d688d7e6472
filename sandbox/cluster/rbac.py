"""Authentication by bearer token and authorization by RBAC, as the API server does them.

- Tokens: the admin token of the sandbox's kubeconfig (user "kubernetes-admin" in group
  `system:masters`, which the API server lets do anything), and ServiceAccount tokens issued
  by the TokenRequest API (`POST .../serviceaccounts/NAME/token`, what `kubectl create token`
  calls), valid while the ServiceAccount exists. An unknown token is a 401
  (k8s.io/apiserver/pkg/endpoints/filters/authentication.go → responsewriters.Unauthorized).
- A request with no credentials at all is the admin, like the API server's old insecure
  port (`--insecure-port`, removed in 1.20): the sandbox serves plain HTTP, and kubectl
  (client-go) never sends a bearer token over plain HTTP, so this keeps the admin kubeconfig
  working for kubectl. Restricted identities are always tested with a token.
- RBAC as plugin/pkg/auth/authorizer/rbac/rbac.go and pkg/apis/rbac/v1/evaluation_helpers.go
  evaluate it: ClusterRoleBindings grant their ClusterRole's rules everywhere, RoleBindings
  grant a Role's or ClusterRole's rules in their own namespace; a rule matches on verbs,
  apiGroups, resources ("deployments/scale" for a subresource, "*" and "*/scale"),
  resourceNames (never for create, list, watch or deletecollection: those carry no name) and
  nonResourceURLs. Allow-only, as RBAC is.
- Denials as responsewriters/errors.go `forbiddenMessage` + errors.NewForbidden word them.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from sandbox.cluster.store import ApiError, ObjectStore

ADMIN_TOKEN = "sandbox"
ADMIN_USER = "kubernetes-admin"
ANONYMOUS = "system:anonymous"
# what the API server's bootstrap ClusterRoles give everyone (system:public-info-viewer) and
# every authenticated user (system:discovery, system:basic-user)
PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
DISCOVERY_PREFIXES = ("/api", "/apis", "/openapi", "/version")
NAMELESS_VERBS = frozenset({"create", "list", "watch", "deletecollection"})


@dataclass(frozen=True)
class User:
    """Who sent a request."""

    name: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Request:
    """What a request does, in the authorizer's terms (authorizer.Attributes)."""

    verb: str
    path: str
    group: str = ""
    resource: str = ""  # empty: a non-resource request (discovery, /version …)
    subresource: str = ""
    namespace: str = ""
    name: str = ""


@dataclass
class Authenticator:
    """Bearer tokens → users."""

    store: ObjectStore
    _tokens: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # → ns, name, uid
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, namespace: str, name: str) -> str:
        """A token for ServiceAccount namespace/name (the TokenRequest API)."""
        account = self.store.get(self.store.resource("serviceaccounts"), namespace, name)
        token = "sa." + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (namespace, name, account["metadata"]["uid"])
        return token

    def user(self, authorization: str | None) -> User:
        """The user a request's Authorization header names (401 for a bad token)."""
        if not authorization:  # the "insecure port": see the module docstring
            return User(ADMIN_USER, ("system:masters", "system:authenticated"))
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized()
        if token == ADMIN_TOKEN:
            return User(ADMIN_USER, ("system:masters", "system:authenticated"))
        with self._lock:
            bound = self._tokens.get(token)
        if bound is None:
            raise unauthorized()
        namespace, name, uid = bound
        try:
            account = self.store.get(self.store.resource("serviceaccounts"), namespace, name)
        except ApiError:
            raise unauthorized() from None
        if account["metadata"]["uid"] != uid:  # deleted and re-created: the old token is dead
            raise unauthorized()
        return User(
            f"system:serviceaccount:{namespace}:{name}",
            (
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ),
        )


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def authorize(store: ObjectStore, user: User, request: Request) -> None:
    """Raise the API server's 403 unless RBAC allows `request` for `user`."""
    if allowed(store, user, request):
        return
    raise forbidden(user, request)


def allowed(store: ObjectStore, user: User, request: Request) -> bool:
    if "system:masters" in user.groups:
        return True
    if not request.resource and request.verb == "get":
        if request.path in PUBLIC_PATHS:
            return True
        if "system:authenticated" in user.groups and (request.path.startswith(DISCOVERY_PREFIXES)):
            return True
    for rules, namespace in _granted(store, user):
        if namespace and namespace != request.namespace:
            continue
        if any(_rule_allows(rule, request) for rule in rules):
            return True
    return False


def _granted(store: ObjectStore, user: User) -> list[tuple[list[dict[str, Any]], str]]:
    """(rules, namespace or "" for everywhere) of every binding naming `user`."""
    resource = store.resource
    granted: list[tuple[list[dict[str, Any]], str]] = []
    bindings, _ = store.list(resource("clusterrolebindings.rbac.authorization.k8s.io"))
    for binding in bindings:
        if _names(binding, user, ""):
            granted.append((_role_rules(store, binding["roleRef"], ""), ""))
    bindings, _ = store.list(resource("rolebindings.rbac.authorization.k8s.io"))
    for binding in bindings:
        namespace = binding["metadata"]["namespace"]
        if _names(binding, user, namespace):
            granted.append((_role_rules(store, binding["roleRef"], namespace), namespace))
    return granted


def _names(binding: dict[str, Any], user: User, namespace: str) -> bool:
    for subject in binding.get("subjects") or []:
        kind, name = subject.get("kind"), subject.get("name")
        if kind == "User" and name == user.name:
            return True
        if kind == "Group" and name in user.groups:
            return True
        if kind == "ServiceAccount":
            subject_namespace = subject.get("namespace") or namespace
            if user.name == f"system:serviceaccount:{subject_namespace}:{name}":
                return True
    return False


def _role_rules(store: ObjectStore, ref: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    kind = ref.get("kind")
    try:
        if kind == "ClusterRole":
            role = store.get(
                store.resource("clusterroles.rbac.authorization.k8s.io"), "", ref["name"]
            )
        elif kind == "Role" and namespace:
            role = store.get(
                store.resource("roles.rbac.authorization.k8s.io"), namespace, ref["name"]
            )
        else:
            return []
    except ApiError:  # a binding to a missing role grants nothing
        return []
    return list(role.get("rules") or [])


def _rule_allows(rule: dict[str, Any], request: Request) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and request.verb not in verbs:
        return False
    if not request.resource:
        return any(
            url == request.path
            or url == "*"
            or (url.endswith("*") and request.path.startswith(url[:-1]))
            for url in rule.get("nonResourceURLs") or []
        )
    groups = rule.get("apiGroups") or []
    if "*" not in groups and request.group not in groups:
        return False
    combined = (
        f"{request.resource}/{request.subresource}" if request.subresource else request.resource
    )
    resources = rule.get("resources") or []
    if not any(
        r in ("*", combined) or (request.subresource and r == f"*/{request.subresource}")
        for r in resources
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or (request.verb not in NAMELESS_VERBS and request.name in names)


def forbidden(user: User, request: Request) -> ApiError:
    """403 worded as responsewriters.forbiddenMessage and errors.NewForbidden word it."""
    if not request.resource:
        reason = f'User "{user.name}" cannot {request.verb} path "{request.path}"'
        return ApiError(403, "Forbidden", f"forbidden: {reason}")
    combined = (
        f"{request.resource}/{request.subresource}" if request.subresource else request.resource
    )
    reason = (
        f'User "{user.name}" cannot {request.verb} resource "{combined}" '
        f'in API group "{request.group}"'
    )
    reason += (
        f' in the namespace "{request.namespace}"' if request.namespace else " at the cluster scope"
    )
    qualified = f"{request.resource}.{request.group}" if request.group else request.resource
    subject = f'{qualified} "{request.name}"' if request.name else qualified
    details = {"name": request.name, "group": request.group, "kind": request.resource}
    return ApiError(
        403,
        "Forbidden",
        f"{subject} is forbidden: {reason}",
        {k: v for k, v in details.items() if v},
    )
