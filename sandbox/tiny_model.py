"""A tiny Llama repo that real vLLM can serve: the model of the demo and the end-to-end tests.

Deterministic: the same version of this generator writes byte-identical files, so the
sandbox Hub gives it the same commit id every time. The weights are random (it answers
gibberish, fluently); the byte-level BPE tokenizer is really trained, on a generated corpus.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

REPO_ID = "llm-rollout/tiny-llama"
VOCAB_SIZE = 2048
HIDDEN = 128
INTERMEDIATE = 384
LAYERS = 2
HEADS = 4
KV_HEADS = 2
HEAD_DIM = HIDDEN // HEADS  # 32: a head size vLLM's CPU attention supports
MAX_POSITIONS = 1024
SEED = 20260101

BOS, EOS, EOT = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"
HEADER_START, HEADER_END = "<|start_header_id|>", "<|end_header_id|>"
SPECIAL_TOKENS = [BOS, EOS, EOT, HEADER_START, HEADER_END]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
_CORPUS_TEXT = (
    "the model serves tokens to users on a cluster of nodes with fast GPUs and a shared "
    "volume of weights; every release is verified, canaried and promoted when the latency "
    "stays low and the errors stay rare, or rolled back when the canary regresses against "
    "stable. Prometheus scrapes metrics, Dagster runs the pipeline, Kubernetes keeps pods "
    "ready. What is the time to first token? How many requests wait in the queue? 0 1 2 3 4 5 "
    "6 7 8 9 10 42 100 2048 hello world yes no please thanks"
)


def write_tiny_model(folder: Path) -> Path:
    """Write the tiny Llama repo (config, tokenizer, safetensors weights) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer()
    tokenizer.save(str(folder / "tokenizer.json"))
    ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
    _write_json(folder / "config.json", _config(ids[BOS], ids[EOS], ids[EOT]))
    _write_json(
        folder / "generation_config.json",
        {"bos_token_id": ids[BOS], "eos_token_id": [ids[EOS], ids[EOT]], "do_sample": False},
    )
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS,
            "eos_token": EOT,
            "pad_token": EOS,
            "model_max_length": MAX_POSITIONS,
            "clean_up_tokenization_spaces": False,
            "chat_template": CHAT_TEMPLATE,
        },
    )
    _write_json(folder / "special_tokens_map.json", {"bos_token": BOS, "eos_token": EOT})
    _write_safetensors(folder / "model.safetensors", _weights())
    (folder / "README.md").write_text(
        "---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n"
        "# tiny-llama\n\n"
        "A generated 2-layer Llama with random weights, for llm-rollout's sandbox.\n"
    )
    return folder


def _corpus() -> list[str]:
    rng = random.Random(SEED)
    words = _CORPUS_TEXT.split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 30))) for _ in range(3000)]


def _train_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer)
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return tokenizer


def _config(bos: int, eos: int, eot: int) -> dict[str, object]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": VOCAB_SIZE,
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "max_position_embeddings": MAX_POSITIONS,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": bos,
        "eos_token_id": [eos, eot],
    }


def _weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    kv = KV_HEADS * HEAD_DIM
    tensors = {"model.embed_tokens.weight": normal(VOCAB_SIZE, HIDDEN)}
    for layer in range(LAYERS):
        prefix = f"model.layers.{layer}"
        tensors |= {
            f"{prefix}.input_layernorm.weight": np.ones(HIDDEN, np.float32),
            f"{prefix}.post_attention_layernorm.weight": np.ones(HIDDEN, np.float32),
            f"{prefix}.self_attn.q_proj.weight": normal(HIDDEN, HIDDEN),
            f"{prefix}.self_attn.k_proj.weight": normal(kv, HIDDEN),
            f"{prefix}.self_attn.v_proj.weight": normal(kv, HIDDEN),
            f"{prefix}.self_attn.o_proj.weight": normal(HIDDEN, HIDDEN),
            f"{prefix}.mlp.gate_proj.weight": normal(INTERMEDIATE, HIDDEN),
            f"{prefix}.mlp.up_proj.weight": normal(INTERMEDIATE, HIDDEN),
            f"{prefix}.mlp.down_proj.weight": normal(HIDDEN, INTERMEDIATE),
        }
    tensors["model.norm.weight"] = np.ones(HIDDEN, np.float32)
    tensors["lm_head.weight"] = normal(VOCAB_SIZE, HIDDEN)
    return tensors


def _write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write bfloat16 safetensors by hand (numpy has no bfloat16; real checkpoints use it)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    payloads: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name], dtype=np.float32)
        # bfloat16 is the top half of float32; round to nearest even on the dropped half.
        bits = array.view(np.uint32)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")
        payload = rounded.tobytes()
        header[name] = {
            "dtype": "BF16",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(payload)],
        }
        payloads.append(payload)
        offset += len(payload)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data section starts 8-byte aligned
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for payload in payloads:
            handle.write(payload)


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# A template regression as upstream repos ship them now and then: valid Jinja that refuses
# every conversation not opening with a system message (vLLM answers such requests 400).
SYSTEM_FIRST_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ raise_exception('Conversations must start with a system message.') }}{% endif %}"
    + CHAT_TEMPLATE
)


# A subtler template regression: every request is answered (200), but system messages are
# silently dropped from the prompt, so instructions stop reaching the model.
DROPS_SYSTEM_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] != 'system' %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
PERTURBED_LAYER = "model.layers.1.mlp.down_proj.weight"  # one tensor of the last layer
PERTURBATION = 0.5  # its weights scaled by 1.5: same file, same size, other answers


def write_revision(model: Path, folder: Path, change: str) -> Path:
    """A later revision of the tiny model in `folder`:
    `model-card` — same weights, a new README (a good release);
    `system-first-template` — a chat template that rejects the usual requests (a bad
    release every latency and error check sees);
    `drops-system-template` — a template that silently drops system messages, and
    `perturbed-layer` — one layer's weights changed, same file names and sizes (subtly bad
    releases: every request succeeds, fast; only the quality gate sees them);
    `sampling-default` — a generation_config.json whose default temperature changed (what
    clients get when they send no sampling parameters)."""
    shutil.copytree(model, folder, dirs_exist_ok=True)
    if change == "drops-system-template":
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        config["chat_template"] = DROPS_SYSTEM_TEMPLATE
        _write_json(config_path, config)
    elif change == "perturbed-layer":
        tensors = _weights()
        tensors[PERTURBED_LAYER] = tensors[PERTURBED_LAYER] * (1 + PERTURBATION)
        _write_safetensors(folder / "model.safetensors", tensors)
    elif change == "sampling-default":
        config_path = folder / "generation_config.json"
        config = json.loads(config_path.read_text())
        config |= {"do_sample": True, "temperature": 1.3}
        _write_json(config_path, config)
    elif change == "model-card":
        (folder / "README.md").write_text("# tiny-llama\n\nRevision 2: a clearer model card.\n")
    elif change == "system-first-template":
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        config["chat_template"] = SYSTEM_FIRST_TEMPLATE
        _write_json(config_path, config)
    else:
        raise ValueError(f"unknown revision change {change!r}")
    return folder
