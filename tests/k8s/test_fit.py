"""The fit check on plain values: the KV-cache formula against figures vLLM itself printed,
and the verdicts a user sees for specs that fit, barely fit, or cannot fit."""

from __future__ import annotations

from typing import Any

import pytest

from llm_rollout.k8s.fit import GIB, CannotEstimate, FitReport, check_fit, kv_shape, weight_bytes
from llm_rollout.spec import ReleaseSpec
from tests.conftest import MINIMAL_SPEC, merged

LLAMA_3_8B = {  # meta-llama/Meta-Llama-3-8B config.json
    "architectures": ["LlamaForCausalLM"],
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "hidden_size": 4096,
    "max_position_embeddings": 8192,
    "torch_dtype": "bfloat16",
}
LLAMA_70B = {  # deepseek-ai/DeepSeek-R1-Distill-Llama-70B config.json
    "architectures": ["LlamaForCausalLM"],
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "hidden_size": 8192,
    "max_position_embeddings": 131072,
    "torch_dtype": "bfloat16",
}
QWEN3_235B = {  # Qwen/Qwen3-235B-A22B-FP8 config.json
    "architectures": ["Qwen3MoeForCausalLM"],
    "num_hidden_layers": 94,
    "num_attention_heads": 64,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "hidden_size": 4096,
    "sliding_window": None,
    "use_sliding_window": False,
    "torch_dtype": "bfloat16",
}
DEEPSEEK_V3 = {  # deepseek-ai/DeepSeek-V3-0324 config.json
    "architectures": ["DeepseekV3ForCausalLM"],
    "num_hidden_layers": 61,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "kv_lora_rank": 512,
    "qk_rope_head_dim": 64,
    "max_position_embeddings": 163840,
    "torch_dtype": "bfloat16",
}
DEEPSEEK_V2_LITE = {  # deepseek-ai/DeepSeek-V2-Lite-Chat config.json
    "architectures": ["DeepseekV2ForCausalLM"],
    "num_hidden_layers": 27,
    "kv_lora_rank": 512,
    "qk_rope_head_dim": 64,
    "torch_dtype": "bfloat16",
}
TINY_LLAMA = {  # sandbox/tiny_model.py
    "architectures": ["LlamaForCausalLM"],
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "hidden_size": 128,
    "torch_dtype": "bfloat16",
}


def spec(**changes: Any) -> ReleaseSpec:
    return ReleaseSpec.model_validate(merged(MINIMAL_SPEC, changes))


def on(
    product: str,
    gpus: int = 1,
    utilization: float = 0.9,
    max_model_len: int | None = None,
    memory: str = "2048Gi",
    shm: str = "64Gi",
    **changes: Any,
) -> ReleaseSpec:
    serving = {"tensor_parallel_size": gpus, "gpu_memory_utilization": utilization}
    if max_model_len:
        serving["max_model_len"] = max_model_len
    serving |= changes.pop("serving", {})
    return spec(
        serving=serving,
        resources={"gpus": gpus, "gpu_product": product, "memory": memory, "shm_size": shm},
        **changes,
    )


@pytest.mark.parametrize(
    ("config", "tp", "pp", "kv_dtype", "expected"),
    [
        # 2 (K, V) × 32 layers × 8 heads × 128 × 2 bytes
        (LLAMA_3_8B, 1, 1, None, 131_072),
        (LLAMA_3_8B, 2, 1, None, 65_536),  # heads split across TP ranks
        (LLAMA_3_8B, 16, 1, None, 16_384),  # fewer heads than ranks: one head replicated
        (LLAMA_3_8B, 1, 2, None, 65_536),  # layers split across PP stages
        (LLAMA_3_8B, 1, 1, "fp8", 65_536),
        # MLA: 61 layers × (512 + 64) × 2 bytes, the same on every TP rank
        (DEEPSEEK_V3, 1, 1, None, 70_272),
        (DEEPSEEK_V3, 8, 1, None, 70_272),
        (TINY_LLAMA, 1, 1, None, 512),
    ],
)
def test_kv_bytes_per_token(
    config: dict[str, Any], tp: int, pp: int, kv_dtype: str | None, expected: int
) -> None:
    assert kv_shape(config, kv_dtype).bytes_per_token_per_gpu(tp, pp) == expected


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({**LLAMA_3_8B, "architectures": ["Gemma3ForCausalLM"]}, "not an architecture"),
        ({**LLAMA_3_8B, "architectures": ["DeepseekV32ForCausalLM"]}, "not an architecture"),
        ({**LLAMA_3_8B, "architectures": ["MistralForCausalLM"], "sliding_window": 4096},
         "sliding_window 4096"),
        ({**LLAMA_3_8B, "torch_dtype": "int4"}, "unknown KV-cache dtype"),
        ({"architectures": ["LlamaForCausalLM"]}, "no num_hidden_layers"),
        ({}, "no architectures"),
    ],
)  # fmt: skip
def test_kv_cache_it_cannot_describe_is_not_estimated(config: dict[str, Any], reason: str) -> None:
    with pytest.raises(CannotEstimate, match=reason):
        kv_shape(config)


def test_qwen_without_sliding_window_is_estimated() -> None:
    # Qwen configs carry a sliding_window size with use_sliding_window false
    shape = kv_shape({**QWEN3_235B, "sliding_window": 131072})
    assert shape.bytes_per_token_per_gpu(4, 1) == 48_128


def test_the_tiny_model_on_cpu_matches_vllm() -> None:
    # vLLM 0.32 CPU with VLLM_CPU_KVCACHE_SPACE=1: "CPU KV cache size: 2,097,152 tokens"
    # (tests/k8s/test_fit_real_vllm.py reads it from a live server)
    assert GIB // kv_shape(TINY_LLAMA).bytes_per_token_per_gpu(1, 1) == 2_097_152


def test_qwen3_235b_tokens_match_vllms_for_its_kv_memory() -> None:
    # vllm-project/vllm#21348: Qwen3-235B-A22B-FP8, TP 4 on H100s, "Available KV cache
    # memory: 8.11 GiB", "GPU KV cache size: 178,880 tokens"
    tokens = int(8.11 * GIB) // kv_shape(QWEN3_235B).bytes_per_token_per_gpu(4, 1)
    assert tokens == pytest.approx(178_880, rel=0.02)


def test_mla_bytes_match_what_vllm_asked_for_deepseek_v2_lite() -> None:
    # vllm-project/vllm#15871: DeepSeek-V2-Lite-Chat, "To serve at least one request with the
    # models's max seq len (32768), (0.95 GiB KV cache is needed"
    per_token = kv_shape(DEEPSEEK_V2_LITE).bytes_per_token_per_gpu(1, 1)
    assert round(per_token * 32768 / GIB, 2) == 0.95


def test_mla_tokens_under_pipeline_parallelism_match_vllms() -> None:
    # vllm-project/vllm#20665: DeepSeek-V2-Lite over 4 L4s with PP 2; the first stage (14 of
    # 27 layers) reports "Available KV cache memory: 12.13 GiB", and vLLM "GPU KV cache size:
    # 807,792 tokens"
    tokens = int(12.13 * GIB) // kv_shape(DEEPSEEK_V2_LITE).bytes_per_token_per_gpu(2, 2)
    assert tokens == pytest.approx(807_792, rel=0.005)


@pytest.mark.parametrize(
    ("tp", "weights_gib", "vllm_kv_gib"),
    [
        # vllm-project/vllm#10511: Meta-Llama-3-8B on A100-SXM4-80GB (79.22 GiB) at 0.90,
        # "model weights take 14.96GiB ... available_kv_cache_memory 53.29GiB" at TP 1, and
        # 7.48 GiB of weights, 3.58 non-torch, 1.26 activations at TP 2 (71.29-12.32 = 58.97)
        (1, 14.96, 53.29),
        (2, 7.48, 58.97),
    ],
)
def test_kv_room_is_close_to_vllms_memory_profile(
    tp: int, weights_gib: float, vllm_kv_gib: float
) -> None:
    report = check_fit(
        on("NVIDIA-A100-SXM4-80GB", gpus=tp), int(weights_gib * GIB * tp), LLAMA_3_8B
    )
    assert report.kv_room_bytes_per_gpu is not None
    assert report.kv_room_bytes_per_gpu / GIB == pytest.approx(vllm_kv_gib, rel=0.03)
    assert report.kv_room_bytes_per_gpu / GIB < vllm_kv_gib  # never promises more


def test_kv_tokens_are_close_to_vllms_on_an_l40s() -> None:
    # vllm-project/vllm#17122: Llama-3.1-8B-Instruct on one L40S, V1 engine, defaults:
    # "Model loading took 14.9889 GiB", "GPU KV cache size: 158,656 tokens"
    report = check_fit(on("NVIDIA-L40S", max_model_len=32768), int(14.9889 * GIB), LLAMA_3_8B)
    assert report.kv_tokens == pytest.approx(158_656, rel=0.10)


def problem_fields(report: FitReport) -> list[str]:
    return [problem.field for problem in report.problems]


def test_deepseek_v3_fits_eight_h200s() -> None:
    report = check_fit(
        on("NVIDIA-H200", gpus=8, utilization=0.92, max_model_len=65536), 688 * 10**9, DEEPSEEK_V3
    )
    assert report.fits, report.problems
    assert report.weights_bytes_per_gpu == 86 * 10**9
    assert report.kv_tokens is not None and report.kv_tokens > 500_000
    assert report.concurrent_sequences is not None and report.concurrent_sequences >= 8
    assert report.summary().startswith("fits: 8 × NVIDIA-H200 (139.8 GiB), weights 80.1 GiB/GPU")


def test_deepseek_v3_on_the_seeds_two_a100s_is_refused_saying_what_would_fit() -> None:
    report = check_fit(
        on("NVIDIA-A100-SXM4-80GB", gpus=2, utilization=0.92), 688 * 10**9, DEEPSEEK_V3
    )
    assert not report.fits
    assert problem_fields(report) == ["resources.gpus"]
    message = report.problems[0].message
    assert "the weights need 320.4 GiB per GPU" in message
    # 688 GB over ~68.9 GiB free per A100 → 10 GPUs → 16 as a TP size: two nodes of 8
    assert "16 GPUs (tensor_parallel_size 8 × pipeline_parallel_size 2 across nodes," in message
    assert "quantized" in message
    assert report.summary().startswith("does NOT fit")


def test_a_context_longer_than_the_kv_cache_is_refused() -> None:
    # 70B in BF16 on 2 × A100-80GB: 65.7 GiB of weights per GPU leaves ~1.7 GiB per GPU
    report = check_fit(
        on("NVIDIA-A100-SXM4-80GB", gpus=2, utilization=0.92, max_model_len=131072),
        141 * 10**9,
        LLAMA_70B,
    )
    assert problem_fields(report) == ["serving.max_model_len"]
    assert "less than one sequence of max_model_len 131,072" in report.problems[0].message
    assert "Lower max_model_len to at most" in report.problems[0].message


def test_few_concurrent_sequences_warn() -> None:
    report = check_fit(
        on("NVIDIA-A100-SXM4-80GB", gpus=4, utilization=0.92, max_model_len=131072),
        141 * 10**9,
        LLAMA_70B,
        "manifest",
    )
    assert report.fits
    assert report.concurrent_sequences == 3
    assert [w.field for w in report.warnings] == ["serving.max_model_len"]
    assert "only 3 sequence(s)" in report.warnings[0].message


def test_an_fp8_kv_cache_holds_twice_the_tokens() -> None:
    base = on("NVIDIA-A100-SXM4-80GB", gpus=4, max_model_len=32768)
    fp8 = on(
        "NVIDIA-A100-SXM4-80GB", gpus=4, max_model_len=32768,
        serving={"extra_args": ["--kv-cache-dtype", "fp8"]},
    )  # fmt: skip
    plain = check_fit(base, 141 * 10**9, LLAMA_70B).kv_tokens
    halved = check_fit(fp8, 141 * 10**9, LLAMA_70B).kv_tokens
    assert plain is not None and halved is not None and halved // 2 == plain


def test_max_model_len_defaults_to_the_models_own() -> None:
    report = check_fit(on("NVIDIA-H200", gpus=8, utilization=0.92), 688 * 10**9, DEEPSEEK_V3)
    assert report.max_model_len == 163840


def test_what_validate_knows_comes_from_the_sizing_section() -> None:
    declared = on(
        "NVIDIA-H200", gpus=8, utilization=0.92,
        sizing={"weights_gb": 688, "config": DEEPSEEK_V3},
    )  # fmt: skip
    report = check_fit(declared)
    assert report.weights_source == "sizing.weights_gb"
    assert report.kv_tokens == check_fit(declared, 688 * 10**9, DEEPSEEK_V3).kv_tokens


@pytest.mark.parametrize(
    ("resources", "field", "words"),
    [
        ({"gpu_product": "NVIDIA-Made-Up"}, "resources.gpu_product", "not in the table"),
        ({"gpu_product": None}, "resources.gpu_product", "no GPU product is named"),
    ],
)
def test_unknown_gpu_memory_is_a_warning_naming_the_override(
    resources: dict[str, Any], field: str, words: str
) -> None:
    report = check_fit(spec(resources=resources), 16 * 10**9, LLAMA_3_8B)
    assert report.fits
    assert [w.field for w in report.warnings] == [field]
    assert words in report.warnings[0].message
    assert "sizing.gpu_memory_gib" in report.warnings[0].message


def test_the_table_is_overridable() -> None:
    report = check_fit(on("NVIDIA-Made-Up", sizing={"gpu_memory_gib": 200}), 16 * 10**9, LLAMA_3_8B)
    assert report.gpu_memory_bytes == 200 * GIB and not report.warnings


def test_an_architecture_it_cannot_estimate_says_so_and_still_checks_weights() -> None:
    gemma = {**LLAMA_3_8B, "architectures": ["Gemma3ForCausalLM"]}
    report = check_fit(on("NVIDIA-L4"), 54 * 10**9, gemma)
    assert report.kv_tokens is None
    assert (
        report.kv_note is not None and "Gemma3ForCausalLM is not an architecture" in report.kv_note
    )
    assert problem_fields(report) == ["resources.gpus"]  # 54 GB on a 22 GiB L4
    assert "KV cache not estimated" in report.summary()


@pytest.mark.parametrize(
    ("gpus", "shm", "memory", "fields", "words"),
    [
        (2, "64Mi", "256Gi", ["resources.shm_size"], "fail to start below 1Gi"),
        (2, "1Gi", "256Gi", [], ""),  # a warning only: vLLM's guide mounts 2Gi
        (1, "64Mi", "256Gi", [], ""),  # one GPU: no NCCL
        (4, "16Gi", "20Gi", ["resources.memory"], "set at least 31.0 GiB"),
    ],
)
def test_host_memory_and_shm(
    gpus: int, shm: str, memory: str, fields: list[str], words: str
) -> None:
    report = check_fit(
        on("NVIDIA-H100-80GB-HBM3", gpus=gpus, shm=shm, memory=memory), 16 * 10**9, LLAMA_3_8B
    )
    assert problem_fields(report) == fields
    if words:
        assert words in report.problems[0].message


def test_a_memory_limit_below_the_weights_warns_about_reloading() -> None:
    report = check_fit(
        on("NVIDIA-H200", gpus=8, utilization=0.92, memory="256Gi", shm="32Gi"),
        688 * 10**9,
        DEEPSEEK_V3,
    )
    assert report.fits
    assert [w.field for w in report.warnings] == ["resources.memory"]
    assert "re-read from the volume" in report.warnings[0].message


def test_a_replica_wider_than_a_node_fits_as_a_group_of_one_pod_a_node() -> None:
    wide = spec(
        serving={"tensor_parallel_size": 8, "pipeline_parallel_size": 2},
        resources={"gpus": 16, "gpus_per_node": 8, "gpu_product": "NVIDIA-H100-80GB-HBM3",
                   "memory": "1024Gi", "shm_size": "32Gi"},
    )  # fmt: skip
    report = check_fit(wide, 688 * 10**9, DEEPSEEK_V3)
    assert "resources.gpus" not in problem_fields(report), report.describe()


def test_a_replica_whose_gpus_do_not_split_over_its_nodes_is_refused() -> None:
    """TP 4 × PP 3 on nodes of 8: two pods of 6 GPUs, so one tensor-parallel group would
    cross nodes."""
    uneven = spec(
        serving={"tensor_parallel_size": 4, "pipeline_parallel_size": 3},
        resources={"gpus": 12, "gpus_per_node": 8, "gpu_product": "NVIDIA-H100-80GB-HBM3",
                   "memory": "1024Gi", "shm_size": "32Gi"},
    )  # fmt: skip
    report = check_fit(uneven, 688 * 10**9, DEEPSEEK_V3)
    assert "resources.gpus" in problem_fields(report)
    problem = next(p for p in report.problems if p.field == "resources.gpus")
    assert "span 2 nodes of 8" in problem.message
    assert "whole tensor-parallel groups of 4" in problem.message


def test_weight_bytes_count_weight_files_only() -> None:
    files = {
        "model-00001.safetensors": 5_000,
        "model-00002.safetensors": 3_000,
        "tokenizer.json": 7,
    }
    assert weight_bytes(files) == 8_000
    assert weight_bytes({"config.json": 10}) == 10
