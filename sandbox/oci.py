"""Pushing a small OCI image to a registry over the distribution API (blob uploads, then
the manifest) — how the sandbox's kaniko stand-in and the tests put real images there."""

from __future__ import annotations

import hashlib
import json

import requests

TIMEOUT_SECONDS = 30.0


def push_image(
    registry_url: str, repository: str, tag: str, layer: bytes, auth: tuple[str, str] | None
) -> str:
    """Push a one-layer image to `registry_url` (e.g. http://127.0.0.1:5000); return its
    manifest digest."""
    session = requests.Session()
    session.auth = auth
    base = f"{registry_url}/v2/{repository}"
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
        }
    ).encode()
    descriptors = []
    for data, media_type in (
        (config, "application/vnd.oci.image.config.v1+json"),
        (layer, "application/vnd.oci.image.layer.v1.tar"),
    ):
        started = session.post(f"{base}/blobs/uploads/", timeout=TIMEOUT_SECONDS)
        started.raise_for_status()
        location = started.headers["Location"]
        if location.startswith("/"):
            location = f"{registry_url}{location}"
        join = "&" if "?" in location else "?"
        session.put(
            f"{location}{join}digest={sha256(data)}",
            data=data,
            timeout=TIMEOUT_SECONDS,
            headers={"Content-Type": "application/octet-stream"},
        ).raise_for_status()
        descriptors.append({"mediaType": media_type, "digest": sha256(data), "size": len(data)})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptors[0],
            "layers": [descriptors[1]],
        }
    ).encode()
    session.put(
        f"{base}/manifests/{tag}",
        data=manifest,
        timeout=TIMEOUT_SECONDS,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    ).raise_for_status()
    return sha256(manifest)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
