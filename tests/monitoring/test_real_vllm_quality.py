"""The quality gate against two real vLLM servers of the same release (CPU, the tiny model):
the API calls it relies on answer as expected (tokenized prompts, greedy answers with token
ids and log-probabilities, teacher-forced prompt log-probabilities), and two pods of one
release pass every quality measurement — the noise floor the default limits stand on."""

from __future__ import annotations

import math

from llm_rollout.monitoring.quality import (
    GoldenPrompt,
    QualityLimits,
    VllmEndpoint,
    collect,
    compare,
    judge_quality,
)
from llm_rollout.spec import load_spec
from tests.conftest import DEMO_SPEC
from tests.fixtures.sandbox_servers import VllmPair

SPEC = load_spec(DEMO_SPEC)
PROMPTS = [
    GoldenPrompt("greeting", [{"role": "user", "content": "Say hello."}]),
    GoldenPrompt(
        "with a system prompt",
        [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": "What colour is the sky?"},
        ],
    ),
    GoldenPrompt("counting", [{"role": "user", "content": "Count to five."}], max_tokens=12),
]
# the spec's defaults (spec/schema.py Quality)
DEFAULTS = QualityLimits(min_agreement=0.9, max_logprob_drift=0.05, max_expectation_drop=0.0)


def endpoint(url: str) -> VllmEndpoint:
    return VllmEndpoint(url, SPEC.served_model_name, seed=0, max_tokens=16)


def test_two_pods_of_one_release_pass_every_quality_measurement(real_vllm_pair: VllmPair) -> None:
    canary, stable = endpoint(real_vllm_pair.canary.url), endpoint(real_vllm_pair.stable.url)
    samples = collect(PROMPTS, canary, stable)
    for s in samples:
        assert s.stable.prompt_ids and s.stable.output_ids, s
        assert len(s.stable.logprobs) == len(s.stable.output_ids)
        assert len(s.canary_on_stable) == len(s.stable.output_ids)
        assert all(math.isfinite(x) and x <= 0 for x in s.canary_on_stable)
    report = compare(samples)
    measurements = judge_quality(DEFAULTS, report)
    assert {m.name: m.outcome.value for m in measurements} == {
        "prompt_identity": "Pass",
        "agreement": "Pass",
        "logprob_drift": "Pass",
    }, [(m.name, m.canary, m.reason) for m in measurements]


def test_a_pod_teacher_forced_along_its_own_answer_gives_its_own_logprobs(
    real_vllm_pair: VllmPair,
) -> None:
    stable = endpoint(real_vllm_pair.stable.url)
    answer = stable.answer(PROMPTS[0])
    forced = stable.teacher_forced(answer.prompt_ids, answer.output_ids)
    gaps = [abs(a - b) for a, b in zip(forced, answer.logprobs, strict=True)]
    assert max(gaps) < 0.05, list(zip(forced, answer.logprobs, strict=True))
