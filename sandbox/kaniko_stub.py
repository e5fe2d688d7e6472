"""The sandbox's stand-in for the kaniko executor image: it reads the build context the Job
mounted, "builds" it (a Dockerfile `RUN` that exits non-zero fails the build, as a failing
step would), pushes a small real OCI image to the destination registry, and writes the
digest to `--digest-file` — the same contract llm-rollout relies on with real kaniko."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import sys
import tarfile
from pathlib import Path

from sandbox.oci import push_image

FAILING_STEP = re.compile(r"^RUN .*\bexit [1-9]", re.MULTILINE)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="executor")
    parser.add_argument("--context", required=True)
    parser.add_argument("--dockerfile", default="Dockerfile")
    parser.add_argument("--destination", action="append", required=True)
    parser.add_argument("--digest-file")
    parser.add_argument("--insecure", action="store_true")
    parser.add_argument("--insecure-registry", action="append", default=[])
    parser.add_argument("--skip-tls-verify", action="store_true")
    parser.add_argument("--reproducible", action="store_true")
    parser.add_argument("--cache", default="false")
    options, _ = parser.parse_known_args(argv)
    context = Path(options.context.removeprefix("dir://"))
    dockerfile = (context / options.dockerfile).read_text()
    print(
        f"INFO Retrieving image manifest {dockerfile.split('FROM ', 1)[1].split()[0]}", flush=True
    )
    failing = FAILING_STEP.search(dockerfile)
    if failing:
        print(f"INFO {failing.group(0)}", flush=True)
        print(
            "error building image: error building stage: failed to execute command: "
            "waiting for process to exit: exit status 1",
            flush=True,
        )
        return 1
    layer = _tar(context)
    digest = ""
    for destination in options.destination:
        insecure = options.insecure or destination.split("/")[0] in options.insecure_registry
        digest = _push(destination, layer, insecure)
        print(f"INFO Pushed {destination.split(':')[0]}@{digest}", flush=True)
    if options.digest_file:
        Path(options.digest_file).write_text(digest)
    return 0


def _tar(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                info = tarfile.TarInfo(str(path.relative_to(folder)))
                info.size, info.mtime = path.stat().st_size, 0
                archive.addfile(info, io.BytesIO(path.read_bytes()))
    return buffer.getvalue()


def _push(destination: str, layer: bytes, insecure: bool) -> str:
    host, _, rest = destination.partition("/")
    repository, _, tag = rest.rpartition(":")
    return push_image(
        f"{'http' if insecure else 'https'}://{host}", repository, tag, layer, _auth(host)
    )


def _auth(host: str) -> tuple[str, str] | None:
    config = Path(os.environ.get("DOCKER_CONFIG", "/kaniko/.docker")) / "config.json"
    if not config.exists():
        return None
    entry = json.loads(config.read_text()).get("auths", {}).get(host)
    if not entry or "auth" not in entry:
        return None
    username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    return username, password


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
