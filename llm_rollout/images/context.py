"""The image build context for a spec: rendered templates, their content hash, the tag.

Same spec, same bytes, same tag; any change to the Dockerfile, the healthcheck, the vLLM
version or the base gives a new tag. The hash covers exactly the files a builder sees.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from llm_rollout.spec import ReleaseSpec
from llm_rollout.spec.rules import FULL_COMMIT

TEMPLATES = Path(__file__).parent / "vllm"
CUDA_VERSION = "12.4.1"  # what vLLM's own CUDA wheels are built against
HASH_LENGTH = 12
# Before 0.9 the official image ran the OpenAI server module; since then `vllm serve`.
SERVE_ENTRYPOINT_SINCE = (0, 9, 0)


class ImageError(Exception):
    """The image cannot be rendered or built as the spec asks."""


@dataclass(frozen=True)
class BuildContext:
    """A rendered build context: its files (name → bytes), content hash and tag."""

    spec: ReleaseSpec
    files: dict[str, bytes]

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        return digest.hexdigest()

    @property
    def repository(self) -> str:
        registry = self.spec.image.registry
        if not registry:
            raise ImageError(
                f"{self.spec.name}: image.registry is needed to tag a built image "
                f"(builder '{self.spec.image.builder}')"
            )
        return f"{registry.rstrip('/')}/{self.spec.name}-vllm"

    @property
    def tag(self) -> str:
        """'<version>-<hash12>'."""
        return f"{self.spec.serving.vllm_version}-{self.content_hash[:HASH_LENGTH]}"

    @property
    def reference(self) -> str:
        """'<registry>/<name>-vllm:<version>-<hash12>'."""
        return f"{self.repository}:{self.tag}"

    def write(self, folder: Path) -> Path:
        """Write the context into `folder` (replacing what was there)."""
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for name, data in self.files.items():
            (folder / name).write_bytes(data)
        return folder


def entrypoint(spec: ReleaseSpec) -> list[str]:
    """The server command of the chosen vLLM version (what the official image runs)."""
    if spec.serving.version_tuple >= SERVE_ENTRYPOINT_SINCE:
        return ["vllm", "serve"]
    return ["python3", "-m", "vllm.entrypoints.openai.api_server"]


def render_context(spec: ReleaseSpec) -> BuildContext:
    """Render the spec's build context (Dockerfile, healthcheck, .dockerignore) in memory."""
    base = spec.image.base
    template = TEMPLATES / f"{base}.Dockerfile"
    if not template.exists():
        raise ImageError(f"{spec.name}: no template for image base '{base}'")
    revision = spec.source.revision
    values = {
        "name": spec.name,
        "vllm_version": spec.serving.vllm_version,
        "source_repo": spec.source.repo,
        "image_source": f"https://huggingface.co/{spec.source.repo}",
        # a branch name would make the label lie once the branch moves; the weights commit
        # lives in the Deployment's annotations instead
        "source_revision": revision if FULL_COMMIT.match(revision) else f"{revision} (branch/tag)",
        "start_period": spec.rollout.startup_budget_seconds,
        "cuda_version": CUDA_VERSION,
        "entrypoint": " ".join(entrypoint(spec)),
        "entrypoint_json": json.dumps(entrypoint(spec)),
    }
    dockerfile = template.read_text().format(**values)
    return BuildContext(
        spec,
        {
            "Dockerfile": dockerfile.encode(),
            "healthcheck.py": (TEMPLATES / "healthcheck.py").read_bytes(),
            ".dockerignore": (TEMPLATES / "dockerignore").read_bytes(),
        },
    )
