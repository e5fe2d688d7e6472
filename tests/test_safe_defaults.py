"""Safe defaults: the bundled specs are examples, the demo's spec lives with the sandbox, and
nothing a user did not write is loaded, granted RBAC or baked into the user-code image."""

from __future__ import annotations

import re

from llm_rollout.spec import load_spec, spec_files
from tests.conftest import DEMO_SPEC, EXAMPLES_DIR, REPO_ROOT
from tests.test_import_rule import PRODUCT_PACKAGES

DOCKERFILE = REPO_ROOT / "deploy" / "user-code.Dockerfile"


def test_the_repository_models_folder_holds_no_spec() -> None:
    # the default models folder: an example or the demo here would be rolled out (with its
    # refresh schedule and sensors RUNNING) by a code location started in the checkout
    models = REPO_ROOT / "models"
    assert not [p for p in models.iterdir() if p.suffix in (".yaml", ".yml")]


def test_examples_hold_no_demo_or_sandbox_spec() -> None:
    for path in spec_files(EXAMPLES_DIR):
        spec = load_spec(path)
        assert spec.name != load_spec(DEMO_SPEC).name, path
        assert "sandbox" not in path.read_text(), path


def test_the_demo_spec_lives_with_the_sandbox() -> None:
    assert DEMO_SPEC.is_relative_to(REPO_ROOT / "sandbox")
    from sandbox.demo import DEMO_SPEC as used_by_the_demo

    assert used_by_the_demo == DEMO_SPEC


def copied_sources() -> set[str]:
    """The top-level paths of the repository the user-code image COPYs."""
    copied = [
        line.split()[1:-1]
        for line in DOCKERFILE.read_text().splitlines()
        if re.match(r"\s*(COPY|ADD)\s", line)
    ]
    return {source.rstrip("/").split("/")[0] for sources in copied for source in sources}


def test_the_user_code_image_copies_no_examples_sandbox_or_tests() -> None:
    assert not copied_sources() & {"examples", "sandbox", "tests", "bench", "scripts", ".", "*"}


def test_the_user_code_image_copies_every_product_package() -> None:
    # `pip install .` in the image installs only what was copied: a package left out is a
    # code location that fails to import in the cluster
    assert set(PRODUCT_PACKAGES) <= copied_sources()
