"""Asking an OCI registry whether an image tag exists (and its digest), through the OCI
distribution API: `HEAD /v2/<repository>/manifests/<tag>`, with Basic or Bearer-token auth."""

from __future__ import annotations

import re
from dataclasses import dataclass

import requests

from llm_rollout.images.context import ImageError

DOCKER_HUB = "registry-1.docker.io"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
TIMEOUT_SECONDS = 10.0  # one registry round trip; a dead registry must not hang a build
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryAuthRequired(ImageError):
    """The registry wants credentials that were not given (or were refused)."""


class RegistryUnreachable(ImageError):
    """The registry could not be reached or answered an error."""


@dataclass(frozen=True)
class Credentials:
    """Registry login; the password never appears in messages."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


@dataclass(frozen=True)
class ImageReference:
    """registry host, repository and tag (or digest) of an image reference."""

    registry: str
    repository: str
    tag: str

    @classmethod
    def parse(cls, reference: str) -> ImageReference:
        name, tag = reference, "latest"
        if "@" in name:
            name, tag = name.split("@", 1)
        elif ":" in name.rsplit("/", 1)[-1]:
            name, tag = name.rsplit(":", 1)
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, rest
        else:
            registry, repository = DOCKER_HUB, name if "/" in name else f"library/{name}"
        return cls(registry, repository, tag)

    def base_url(self, insecure: bool) -> str:
        scheme = "http" if insecure else "https"
        return f"{scheme}://{self.registry}/v2/{self.repository}"


class RegistryClient:
    """Checks tags in OCI registries; `insecure_registries` are spoken to over plain HTTP."""

    def __init__(
        self, credentials: Credentials | None = None, insecure_registries: tuple[str, ...] = ()
    ) -> None:
        self.credentials = credentials
        self.insecure = insecure_registries
        self.session = requests.Session()

    def manifest_digest(self, reference: str) -> str | None:
        """The digest of `reference`'s manifest, or None when the tag does not exist."""
        image = ImageReference.parse(reference)
        url = f"{image.base_url(image.registry in self.insecure)}/manifests/{image.tag}"
        headers = {"Accept": MANIFEST_TYPES}
        response = self._head(url, headers)
        if response.status_code == 401:
            headers["Authorization"] = self._authorization(response, image)
            response = self._head(url, headers)
            if response.status_code == 401:
                raise RegistryAuthRequired(
                    f"{image.registry} refused the credentials for {image.repository}; check "
                    "the registry username and password"
                )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryUnreachable(
                f"{image.registry} answered {response.status_code} for {reference}"
            )
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            raise RegistryUnreachable(f"{image.registry} sent no digest for {reference}")
        return digest

    def exists(self, reference: str) -> bool:
        return self.manifest_digest(reference) is not None

    def _head(self, url: str, headers: dict[str, str]) -> requests.Response:
        try:
            return self.session.head(url, headers=headers, timeout=TIMEOUT_SECONDS)
        except requests.RequestException as error:
            raise RegistryUnreachable(f"cannot reach {url.split('/v2/')[0]}: {error}") from error

    def _authorization(self, challenge: requests.Response, image: ImageReference) -> str:
        header = challenge.headers.get("WWW-Authenticate", "")
        if self.credentials is None and not header.lower().startswith("bearer"):
            raise RegistryAuthRequired(
                f"{image.registry} needs credentials to read {image.repository}: set the "
                "registry username and password (LLM_ROLLOUT_REGISTRY_USERNAME/PASSWORD)"
            )
        if header.lower().startswith("basic"):
            assert self.credentials is not None
            return _basic(self.credentials)
        fields = dict(_CHALLENGE.findall(header))
        params = {
            "service": fields.get("service", ""),
            "scope": fields.get("scope", f"repository:{image.repository}:pull"),
        }
        auth = (self.credentials.username, self.credentials.password) if self.credentials else None
        try:
            token = self.session.get(
                fields["realm"], params=params, auth=auth, timeout=TIMEOUT_SECONDS
            )
        except (KeyError, requests.RequestException) as error:
            raise RegistryUnreachable(f"cannot get a token from {image.registry}") from error
        if token.status_code in (401, 403):
            raise RegistryAuthRequired(f"{image.registry} refused a token for {image.repository}")
        body = token.json()
        return f"Bearer {body.get('token') or body.get('access_token')}"


def _basic(credentials: Credentials) -> str:
    request = requests.Request(
        "HEAD", "http://x", auth=(credentials.username, credentials.password)
    ).prepare()
    return str(request.headers["Authorization"])
