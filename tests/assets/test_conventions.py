"""The Dagster conventions of every model's assets: owners from the spec, a code_version from
what shapes each stage, kinds that say where things live, and descriptions that stay short."""

from __future__ import annotations

import pytest
import yaml

from llm_rollout.assets.versions import image_version, release_version, weights_version
from llm_rollout.pipelines.definitions import build_definitions
from llm_rollout.spec import ReleaseSpec
from tests.conftest import DEMO_SPEC, EXAMPLES_DIR, MINIMAL_SPEC, merged

OWNERS = ["ml-platform@example.com", "team:inference"]
# A description is the line the asset catalog shows; the details live in docs/.
MAX_DESCRIPTION_CHARS = 200


def spec_of(base: dict, **changes: object) -> ReleaseSpec:
    return ReleaseSpec.model_validate(merged(base, changes))


DEMO = yaml.safe_load(DEMO_SPEC.read_text())
SPECS = {
    "demo (nfs)": spec_of(DEMO, owners=OWNERS),
    "pvc": ReleaseSpec.model_validate(
        {**MINIMAL_SPEC, "storage": {"existing_claim": "weights"}, "owners": OWNERS}
    ),
    **{p.name: spec_of(yaml.safe_load(p.read_text())) for p in sorted(EXAMPLES_DIR.glob("*"))},
}


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_every_asset_has_the_spec_owners_a_code_version_and_a_short_description(
    spec: ReleaseSpec,
) -> None:
    asset_specs = build_definitions([spec]).resolve_all_asset_specs()
    assert len(asset_specs) == 4
    for asset in asset_specs:
        name = asset.key.to_user_string()
        assert list(asset.owners) == spec.owners, name
        assert asset.code_version, name
        assert asset.description and len(asset.description) <= MAX_DESCRIPTION_CHARS, name


@pytest.mark.parametrize(
    ("spec", "storage"), [(SPECS["demo (nfs)"], "nfs"), (SPECS["pvc"], "pvc")], ids=["nfs", "pvc"]
)
def test_the_weights_kinds_name_the_storage(spec: ReleaseSpec, storage: str) -> None:
    (weights,) = [
        a
        for a in build_definitions([spec]).resolve_all_asset_specs()
        if a.key.path[-1] == "weights"
    ]
    assert storage in weights.kinds
    assert {"nfs", "pvc"} - {storage} not in weights.kinds


def test_code_versions_move_with_what_shapes_each_stage_only() -> None:
    demo = SPECS["demo (nfs)"]
    other_revision = spec_of(DEMO, owners=OWNERS, source={"revision": "v2"})
    new_vllm = spec_of(DEMO, owners=OWNERS, serving={"vllm_version": "0.11.0"})
    other_owners = spec_of(DEMO, owners=["team:other"], refresh={"cron": "0 4 * * *"})
    assert weights_version(other_revision) != weights_version(demo)
    assert weights_version(new_vllm) == weights_version(demo)
    assert image_version(new_vllm) != image_version(demo)
    assert release_version(new_vllm) != release_version(demo)
    # who is told and when a refresh runs change no stage's result
    for version in (weights_version, image_version, release_version):
        assert version(other_owners) == version(demo)


def test_a_built_image_is_versioned_by_its_build_context() -> None:
    built = spec_of(MINIMAL_SPEC, image={"builder": "kaniko", "registry": "registry.example.com"})
    newer = spec_of(
        MINIMAL_SPEC,
        image={"builder": "kaniko", "registry": "registry.example.com"},
        serving={"vllm_version": "0.12.0"},
    )
    assert image_version(built) != image_version(newer)
