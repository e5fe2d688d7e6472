"""Bad specs: each is refused before anything changes, naming the field and what is allowed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llm_rollout.spec import LocatedProblem, SpecFileError, load_spec

WriteSpec = Callable[..., Path]


def problems_of(path: Path) -> list[LocatedProblem]:
    with pytest.raises(SpecFileError) as caught:
        load_spec(path)
    return caught.value.problems


def only_problem(path: Path) -> LocatedProblem:
    problems = problems_of(path)
    assert len(problems) == 1, problems
    return problems[0]


def test_unknown_field_lists_the_allowed_ones(write_spec: WriteSpec) -> None:
    path = write_spec(serving={"vllm_version": "0.11.0", "tensor_paralel": 2})
    problem = only_problem(path)
    assert problem.field == "serving.tensor_paralel"
    assert "unknown field" in problem.message
    assert "tensor_parallel_size" in problem.message
    typo_line = path.read_text().splitlines().index("  tensor_paralel: 2") + 1
    assert problem.line == typo_line


def test_unknown_top_level_field(write_spec: WriteSpec) -> None:
    problem = only_problem(write_spec(replica=2))
    assert problem.field == "replica"
    assert "replicas" in problem.message


def test_wrong_type_names_the_value(write_spec: WriteSpec) -> None:
    problem = only_problem(write_spec(replicas="two"))
    assert problem.field == "replicas"
    assert "valid integer" in problem.message
    assert "'two'" in problem.message


def test_wrong_choice_lists_the_choices(write_spec: WriteSpec) -> None:
    problem = only_problem(write_spec(rollout={"strategy": "blue-green"}))
    assert problem.field == "rollout.strategy"
    assert "'canary' or 'rolling'" in problem.message


def test_missing_required_field(tmp_path: Path, write_spec: WriteSpec) -> None:
    path = write_spec(text="name: a\nsource: {repo: a/b}\nstorage: {existing_claim: weights}\n")
    problem = only_problem(path)
    assert problem.field == "serving"
    assert problem.message == "required field is missing"


def test_gpus_must_equal_tensor_times_pipeline_parallel(write_spec: WriteSpec) -> None:
    path = write_spec(
        serving={"tensor_parallel_size": 2, "pipeline_parallel_size": 2}, resources={"gpus": 2}
    )
    problem = only_problem(path)
    assert problem.field == "resources.gpus"
    assert "2 × 2 = 4" in problem.message


def test_tensor_parallelism_must_fit_one_node(write_spec: WriteSpec) -> None:
    path = write_spec(
        serving={"tensor_parallel_size": 8}, resources={"gpus": 8, "gpus_per_node": 4}
    )
    problem = only_problem(path)
    assert problem.field == "serving.tensor_parallel_size"
    assert "inside one node" in problem.message


@pytest.mark.parametrize(
    ("revision", "expected"),
    [
        ("abc1234", "abbreviated commit"),
        ("feature..x", "not a valid branch, tag or commit"),
        ("my branch", "not a valid branch, tag or commit"),
        ("-rc", "not a valid branch, tag or commit"),
        ("v1.lock", "not a valid branch, tag or commit"),
        ("", "not a valid branch, tag or commit"),
    ],
)
def test_malformed_revisions(write_spec: WriteSpec, revision: str, expected: str) -> None:
    problem = only_problem(write_spec(source={"revision": revision}))
    assert problem.field == "source.revision"
    assert expected in problem.message


@pytest.mark.parametrize("revision", ["main", "v2.1", "refs/pr/3", "release/2025-06", "a" * 40])
def test_good_revisions(write_spec: WriteSpec, revision: str) -> None:
    assert load_spec(write_spec(source={"revision": revision})).source.revision == revision


def test_name_vllm_is_refused_with_the_reason(write_spec: WriteSpec) -> None:
    problem = only_problem(write_spec(name="vllm"))
    assert problem.field == "name"
    assert "VLLM_PORT" in problem.message


@pytest.mark.parametrize("name", ["Qwen", "qwen_small", "-qwen", "q" * 41])
def test_name_must_be_a_dns_label(write_spec: WriteSpec, name: str) -> None:
    problem = only_problem(write_spec(name=name))
    assert problem.field == "name"
    assert "DNS label" in problem.message


def test_invalid_yaml_names_the_line(write_spec: WriteSpec) -> None:
    problem = only_problem(write_spec(text="name: qwen\nsource: {repo: a/b\nserving: {}\n"))
    assert problem.field == "(top level)"
    assert problem.message.startswith("invalid YAML")
    assert problem.line is not None


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_a_spec_must_be_a_mapping(write_spec: WriteSpec, text: str) -> None:
    assert "expected a mapping" in only_problem(write_spec(text=text)).message


def test_surge_and_unavailable_both_zero(write_spec: WriteSpec) -> None:
    problem = only_problem(write_spec(rollout={"max_surge": 0, "max_unavailable": "0%"}))
    assert problem.field == "rollout.max_surge"


def test_progress_deadline_must_exceed_startup_budget(write_spec: WriteSpec) -> None:
    path = write_spec(rollout={"progress_deadline_seconds": 600, "startup_budget_seconds": 600})
    assert only_problem(path).field == "rollout.progress_deadline_seconds"


@pytest.mark.parametrize(
    ("gate", "field"),
    [
        ({"min_success_rate": 1.5}, "gate.min_success_rate"),
        ({"max_ttft_p99_seconds": float("nan")}, "gate.max_ttft_p99_seconds"),
        ({"max_itl_p99_seconds": float("inf")}, "gate.max_itl_p99_seconds"),
        ({"max_kv_cache_usage": 0}, "gate.max_kv_cache_usage"),
        ({"max_relative_regression": -0.1}, "gate.max_relative_regression"),
        ({"window": "5 minutes"}, "gate.window"),
        ({"window": "20s", "interval_seconds": 30}, "gate.window"),
    ],
)
def test_gate_thresholds_must_be_finite_and_in_range(
    write_spec: WriteSpec, gate: dict[str, Any], field: str
) -> None:
    assert only_problem(write_spec(gate=gate)).field == field


def test_storage_needs_exactly_one_backend(write_spec: WriteSpec) -> None:
    path = write_spec(storage={"existing_claim": "weights"})  # nfs too, from the minimal spec
    problem = only_problem(path)
    assert problem.field == "storage"
    assert "exactly one of 'nfs' or 'existing_claim'" in problem.message


def test_a_builder_that_pushes_needs_a_registry(write_spec: WriteSpec) -> None:
    problem = only_problem(write_spec(image={"builder": "kaniko"}))
    assert problem.field == "image.registry"


def test_autoscaling_bounds(write_spec: WriteSpec) -> None:
    path = write_spec(autoscaling={"min": 4, "max": 2, "target": 5})
    assert only_problem(path).field == "autoscaling.min"
    path = write_spec(replicas=1, autoscaling={"min": 2, "max": 6, "target": 5})
    assert only_problem(path).field == "replicas"


def test_bad_cron(write_spec: WriteSpec) -> None:
    problem = only_problem(write_spec(refresh={"cron": "0 25 * * *"}))
    assert problem.field == "refresh.cron"
    assert "hour" in problem.message


def test_every_problem_is_reported_at_once(write_spec: WriteSpec) -> None:
    path = write_spec(
        name="vllm",
        resources={"gpus": 3},
        rollout={"progress_deadline_seconds": 100, "startup_budget_seconds": 200},
    )
    fields = [problem.field for problem in problems_of(path)]
    assert fields == ["name", "resources.gpus", "rollout.progress_deadline_seconds"]


@pytest.mark.parametrize(
    ("image", "field", "expected"),
    [
        ({"base": "alpine"}, "image.base", "'official' or 'cuda'"),
        ({"builder": "buildah"}, "image.builder", "'docker', 'kaniko' or 'none'"),
    ],
)
def test_unknown_image_base_or_builder(
    write_spec: WriteSpec, image: dict[str, Any], field: str, expected: str
) -> None:
    problem = only_problem(write_spec(image=image))
    assert problem.field == field
    assert expected in problem.message


@pytest.mark.parametrize("version", ["0.11", "v0.11.0", "latest", "0.11.0-cuda"])
def test_unknown_vllm_version_format(write_spec: WriteSpec, version: str) -> None:
    problem = only_problem(write_spec(serving={"vllm_version": version}))
    assert problem.field == "serving.vllm_version"
    assert "expected e.g. '0.11.0'" in problem.message


@pytest.mark.parametrize(
    ("argument", "field_to_set"),
    [
        ("--tensor-parallel-size=4", "serving.tensor_parallel_size"),
        ("--tensor_parallel_size", "serving.tensor_parallel_size"),
        ("-tp", "serving.tensor_parallel_size"),
        ("--port", "port 8000"),
        ("--max-model-len=8192", "serving.max_model_len"),
        ("--no-enable-prefix-caching", "serving.enable_prefix_caching"),
    ],
)
def test_extra_args_may_not_contradict_managed_flags(
    write_spec: WriteSpec, argument: str, field_to_set: str
) -> None:
    path = write_spec(serving={"extra_args": ["--enforce-eager", argument, "4"]})
    problem = only_problem(path)
    assert problem.field == "serving.extra_args[1]"
    assert f"'{argument}' is a flag llm-rollout sets itself; remove it" in problem.message
    assert field_to_set in problem.message
    assert problem.line == path.read_text().splitlines().index(f"  - {argument}") + 1


def test_every_flag_llm_rollout_renders_is_managed() -> None:
    """The list the spec checks against covers what k8s/vllm_args.py actually passes."""
    from llm_rollout.k8s.vllm_args import vllm_args
    from llm_rollout.spec import ReleaseSpec
    from llm_rollout.spec.rules import MANAGED_VLLM_FLAGS
    from tests.conftest import MINIMAL_SPEC, merged

    for version in ("0.8.5", "0.11.0", "0.32.0"):
        for caching in (True, False):
            spec = ReleaseSpec.model_validate(
                merged(
                    MINIMAL_SPEC,
                    {
                        "serving": {
                            "vllm_version": version,
                            "max_model_len": 4096,
                            "enable_prefix_caching": caching,
                        }
                    },
                )
            )
            flags = {a for a in vllm_args(spec, "/models/x") if a.startswith("-")}
            assert flags <= set(MANAGED_VLLM_FLAGS), flags - set(MANAGED_VLLM_FLAGS)


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("HF_HUB_OFFLINE", "set by llm-rollout itself (the weights come from the mounted volume"),
        ("VLLM_API_KEY", "Secret '<model>-api-key'"),
        ("VLLM_PORT", "port 8000"),
        ("1ST", "not an environment variable name Kubernetes accepts"),
        ("WITH SPACE", "not an environment variable name Kubernetes accepts"),
    ],
)
def test_serving_env_may_not_set_what_llm_rollout_sets_or_bad_names(
    write_spec: WriteSpec, variable: str, message: str
) -> None:
    problem = only_problem(
        write_spec(serving={"env": {"VLLM_BATCH_INVARIANT": "1", variable: "x"}})
    )
    assert problem.field == f"serving.env.{variable}"
    assert message in problem.message


def test_every_variable_llm_rollout_renders_is_managed() -> None:
    """The names `serving.env` may not set cover what k8s/manifests.py actually sets."""
    from llm_rollout.k8s import manifests
    from llm_rollout.k8s.release import Release
    from llm_rollout.spec.rules import MANAGED_ENV
    from tests.conftest import DEMO_SPEC

    release = Release(load_spec(DEMO_SPEC), "a" * 40, "img:1")
    (container,) = manifests.deployment(release, 1)["spec"]["template"]["spec"]["containers"]
    assert {e["name"] for e in container["env"]} <= set(MANAGED_ENV)


def test_serving_env_passes_other_variables(write_spec: WriteSpec) -> None:
    spec = load_spec(
        write_spec(serving={"env": {"VLLM_BATCH_INVARIANT": "1", "NCCL_DEBUG": "WARN"}})
    )
    assert spec.serving.env == {"VLLM_BATCH_INVARIANT": "1", "NCCL_DEBUG": "WARN"}


def test_other_extra_args_pass(write_spec: WriteSpec) -> None:
    spec = load_spec(write_spec(serving={"extra_args": ["--enforce-eager", "--dtype=half"]}))
    assert spec.serving.extra_args == ["--enforce-eager", "--dtype=half"]


@pytest.mark.parametrize(
    "product", ["NVIDIA A100 80GB", "NVIDIA-A100-", "a" * 64, "", "nvidia.com/gpu=A100"]
)
def test_gpu_product_must_be_a_label_value(write_spec: WriteSpec, product: str) -> None:
    problem = only_problem(write_spec(resources={"gpu_product": product}))
    assert problem.field == "resources.gpu_product"
    assert "not a Kubernetes label value" in problem.message
    assert "kubectl get nodes -L nvidia.com/gpu.product" in problem.message


@pytest.mark.parametrize("product", ["NVIDIA-A100-SXM4-80GB", "Tesla-T4", "NVIDIA-H100_80GB.x"])
def test_real_gpu_products_pass(write_spec: WriteSpec, product: str) -> None:
    assert load_spec(write_spec(resources={"gpu_product": product})).resources.gpu_product


def test_numbers_are_quantities_as_kubernetes_reads_them(write_spec: WriteSpec) -> None:
    spec = load_spec(write_spec(resources={"cpu": 16, "memory": "64Gi"}))
    assert spec.resources.cpu == "16"
    spec = load_spec(write_spec(resources={"cpu": 0.5}))
    assert spec.resources.cpu == "0.5"


def test_a_boolean_is_not_a_quantity(write_spec: WriteSpec) -> None:
    assert only_problem(write_spec(resources={"cpu": True})).field == "resources.cpu"


@pytest.mark.parametrize(("window", "seconds"), [("1m30s", 90), ("2h", 7200), ("1h5m", 3900)])
def test_compound_prometheus_durations(write_spec: WriteSpec, window: str, seconds: int) -> None:
    path = write_spec(gate={"window": window, "max_gating_seconds": 86400})
    assert load_spec(path).gate.window_seconds == seconds


@pytest.mark.parametrize("window", ["30m1h", "1.5m", "0s", "1500ms", "5 m"])
def test_malformed_durations(write_spec: WriteSpec, window: str) -> None:
    assert only_problem(write_spec(gate={"window": window})).field == "gate.window"


def test_a_namespace_may_be_63_characters(write_spec: WriteSpec) -> None:
    namespace = "n" * 63
    assert load_spec(write_spec(namespace=namespace)).namespace == namespace
    problem = only_problem(write_spec(namespace="n" * 64))
    assert problem.field == "namespace"
    assert "at most 63 characters" in problem.message


def test_the_name_keeps_room_for_deployment_and_pod_suffixes(write_spec: WriteSpec) -> None:
    problem = only_problem(write_spec(name="n" * 41))
    assert "at most 40 characters (room is left for the release id" in problem.message
