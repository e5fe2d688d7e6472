"""The tiny model: deterministic, small, and served by real vLLM."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from sandbox.tiny_model import CHAT_TEMPLATE, write_revision, write_tiny_model
from sandbox.vllm_process import VllmProcess


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_generation_is_deterministic(tmp_path: Path, tiny_model_dir: Path) -> None:
    assert digest(write_tiny_model(tmp_path / "again")) == digest(tiny_model_dir)


def test_it_is_a_small_llama_repo(tiny_model_dir: Path) -> None:
    sizes = sum(p.stat().st_size for p in tiny_model_dir.iterdir())
    assert sizes < 8 * 2**20
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    tokenizer_config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert tokenizer_config["chat_template"] == CHAT_TEMPLATE


@pytest.mark.parametrize(
    ("change", "changed"),
    [
        ("model-card", {"README.md"}),
        ("perturbed-layer", {"model.safetensors"}),  # same names and sizes, other bytes
        ("drops-system-template", {"tokenizer_config.json"}),
        ("sampling-default", {"generation_config.json"}),
    ],
)
def test_a_later_revision_changes_only_what_it_says(
    tmp_path: Path, tiny_model_dir: Path, change: str, changed: set[str]
) -> None:
    revision = write_revision(tiny_model_dir, tmp_path / change, change)
    before, after = digest(tiny_model_dir), digest(revision)
    assert {name for name in after if after[name] != before.get(name)} == changed
    sizes = {p.name: p.stat().st_size for p in revision.iterdir()}
    assert sizes["model.safetensors"] == (tiny_model_dir / "model.safetensors").stat().st_size


def test_the_tokenizer_is_a_trained_byte_level_bpe(tiny_model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    text = "the canary regresses against stable. ünïcödé 🙂"
    encoding = tokenizer.encode(text)
    assert tokenizer.decode(encoding.ids, skip_special_tokens=True) == text
    # merges were learned: common words are single tokens, not bytes
    assert len(tokenizer.encode("the canary").tokens) <= 4


def test_real_vllm_serves_a_chat_completion(real_vllm: VllmProcess) -> None:
    request = urllib.request.Request(
        f"{real_vllm.url}/v1/chat/completions",
        data=json.dumps(
            {
                "model": "tiny-llama",
                "messages": [{"role": "user", "content": "What is the time to first token?"}],
                "max_tokens": 12,
            }
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert body["model"] == "tiny-llama"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["completion_tokens"] == 12
