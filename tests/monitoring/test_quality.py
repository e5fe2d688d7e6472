"""The quality gate's comparing and judging on plain values, and its golden prompt files:
each row a golden set as two tracks answered it, and the outcome a user sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_rollout.monitoring.gate import Outcome
from llm_rollout.monitoring.quality import (
    MEASUREMENTS,
    Answer,
    Expectation,
    GoldenPrompt,
    QualityError,
    QualityLimits,
    Refused,
    Sample,
    VllmEndpoint,
    collect,
    compare,
    judge_quality,
    load_prompts,
)
from sandbox.openai_standin import OpenAIStandin
from sandbox.ports import free_port
from sandbox.vllm_metrics.server import MetricsEmulator

LIMITS = QualityLimits(min_agreement=0.9, max_logprob_drift=0.05, max_expectation_drop=0.0)
PROMPT = [1, 2, 3]
ANSWER = Answer(PROMPT, [7, 8, 9], "Paris", [-0.1, -0.2, -0.3])


def sample(
    canary: Answer = ANSWER,
    forced: list[float] | None = None,
    expect: Expectation | None = None,
    stable: Answer = ANSWER,
) -> Sample:
    prompt = GoldenPrompt("capital", [{"role": "user", "content": "capital of France?"}], expect)
    return Sample(prompt, canary, stable, forced if forced is not None else stable.logprobs)


def outcomes(samples: list[Sample], limits: QualityLimits = LIMITS) -> dict[str, Outcome]:
    return {m.name: m.outcome for m in judge_quality(limits, compare(samples))}


def test_identical_tracks_pass_every_measurement() -> None:
    assert set(outcomes([sample()] * 10).values()) == {Outcome.PASS}


def test_the_measurements_are_the_ones_named_for_their_readers() -> None:
    """MEASUREMENTS names what the demo (and scripts reading the gate check's `outcomes`)
    count as the quality gate's."""
    found = outcomes([sample(expect=Expectation(exact="Paris"))] * 10)
    assert tuple(found) == MEASUREMENTS


@pytest.mark.parametrize(
    ("samples", "failing"),
    [
        # a chat template that drops the system prompt: other prompt token ids
        ([sample(Answer([1, 3], [7, 8, 9], "Paris", [-0.1, -0.2, -0.3]))] * 10, "prompt_identity"),
        # re-uploaded weights: other greedy answers on 2 of 10 prompts
        (
            [sample(Answer(PROMPT, [7, 4], "Lyon", [-0.1, -0.9]))] * 2 + [sample()] * 8,
            "agreement",
        ),
        # re-quantized weights: the same answers, but the canary is far less sure of them
        ([sample(forced=[-0.5, -0.6, -0.7])] * 10, "logprob_drift"),
        # fewer answers meet their expectation than stable's
        (
            [
                sample(
                    Answer(PROMPT, [7, 4], "Lyon", [-0.1, -0.9]),
                    expect=Expectation(exact="Paris"),
                )
            ]
            + [sample(expect=Expectation(regex="^Par"))] * 9,
            "expectations",
        ),
    ],
)
def test_a_subtly_different_release_fails_the_measurement_that_sees_it(
    samples: list[Sample], failing: str
) -> None:
    found = outcomes(samples)
    assert found[failing] is Outcome.FAIL, found


def test_a_canary_that_refuses_prompts_stable_answers_fails_agreement() -> None:
    """A chat template that raises on some conversations: vLLM answers them HTTP 400. Those
    are the canary's answers (worse ones), not a failed measurement."""
    refused = Answer.refusal("HTTP 400: Conversation roles must alternate")
    report = compare([sample(refused, forced=[])] * 2 + [sample()] * 8)
    found = {m.name: m for m in judge_quality(LIMITS, report)}
    assert found["agreement"].outcome is Outcome.FAIL
    assert found["agreement"].canary == 0.8
    assert "refused 2 of 10" in found["agreement"].reason
    assert "must alternate" in found["agreement"].reason and "'Paris'" in found["agreement"].reason
    # the prompts it answered tokenize as stable's; its refusals have no tokens to compare
    assert found["prompt_identity"].outcome is Outcome.PASS
    assert found["logprob_drift"].outcome is Outcome.PASS


def test_a_refusal_fails_the_canary_but_is_an_error_when_stable_refuses_or_either_breaks(
    metrics_emulator: MetricsEmulator,
) -> None:
    """Against HTTP servers: the canary's HTTP 400 is a changed answer (the old code made the
    whole window an Error, which holds a bad canary instead of rolling it back); stable's
    400, or a 500 from either, is an Error — the measurement could not be made."""
    prompt = GoldenPrompt("hi", [{"role": "user", "content": "hi"}])
    working = VllmEndpoint(metrics_emulator.url, "tiny-llama", seed=7, max_tokens=4)
    with OpenAIStandin("bad-template") as pod:
        pod.faults.status = 400
        broken = VllmEndpoint(pod.url, "tiny-llama", seed=7, max_tokens=4)
        (refusal,) = collect([prompt], broken, working)
        assert refusal.canary.refused.endswith("HTTP 400: bad-template failed")
        found = {m.name: m.outcome for m in judge_quality(LIMITS, compare([refusal]))}
        assert found["agreement"] is Outcome.FAIL
        with pytest.raises(QualityError, match="HTTP 400"):
            collect([prompt], working, broken)
        pod.faults.status = 500
        with pytest.raises(QualityError, match="HTTP 500"):
            collect([prompt], broken, working)


def test_an_intended_template_change_may_be_allowed() -> None:
    changed = [sample(Answer([1, 3], [7, 8, 9], "Paris", [-0.1, -0.2, -0.3]))] * 3
    allowed = QualityLimits(0.9, 0.05, 0.0, allow_prompt_change=True)
    assert outcomes(changed, allowed)["prompt_identity"] is Outcome.PASS


def test_the_table_shows_the_prompts_whose_answers_changed() -> None:
    changed = sample(Answer(PROMPT, [7, 4], "Lyon", [-0.1, -0.9]))
    report = compare([changed, sample()])
    assert report.worst and "differs from token 1" in report.worst[0]
    agreement = next(m for m in judge_quality(LIMITS, report) if m.name == "agreement")
    assert "'Lyon'" in agreement.reason and "'Paris'" in agreement.reason


def test_nothing_measured_is_an_error_never_a_pass() -> None:
    assert [m.outcome for m in judge_quality(LIMITS, compare([]))] == [Outcome.ERROR]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": 3}\n', ":2: each line"),
        ("not json\n", ":1: not JSON"),
        ('{"messages": [], "expect": {"regex": "("}}\n', "does not compile"),
        ('{"messages": [], "expect": {"fuzzy": "x"}}\n', "one of exact, regex or any_of"),
        ("\n", "no golden prompts"),
        ('{"messages": [], "sampling": "client"}\n', ':1: `sampling` is "server"'),
        ('{"messages": [], "sampling": {"temprature": 1}}\n', "not temprature"),
        ('{"messages": [], "sampling": {"temperature": "hot"}}\n', "with numbers"),
        ('{"messages": [], "expect": "Paris"}\n', ":1: `expect` is one of exact"),
        ('{"messages": [], "expect": {"exact": 3}}\n', r"any_of \(got exact\)"),
        ('{"messages": []}\n' * 65, "65 prompts; at most 64 per tick"),
    ],
)
def test_a_bad_golden_prompt_file_names_the_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "golden.jsonl"
    path.write_text(text)
    with pytest.raises(QualityError, match=problem):
        load_prompts(path)


@pytest.mark.parametrize("content", [None, b"\xff\xfe not UTF-8\n"], ids=["missing", "binary"])
def test_an_unreadable_golden_prompt_file_says_so(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "golden.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(QualityError, match="cannot read the golden prompts"):
        load_prompts(path)


def test_an_endpoint_that_cannot_answer_is_an_error_naming_it() -> None:
    """A pod that is gone, a server whose completions carry no prompt log-probabilities (not
    vLLM's shape), or a gateway's HTML page is an Error of the measurement, never an answer
    (a 400 page is still the canary refusing the prompt, with the page as its reason)."""
    prompt = GoldenPrompt("hi", [{"role": "user", "content": "hi"}])
    gone = VllmEndpoint(f"http://127.0.0.1:{free_port()}", "tiny-llama", seed=7, max_tokens=4)
    with pytest.raises(QualityError, match="/v1/chat/completions: unreachable"):
        gone.answer(prompt)
    with OpenAIStandin("pod", model="tiny-llama") as pod:
        endpoint = VllmEndpoint(pod.url, "tiny-llama", seed=7, max_tokens=4)
        assert endpoint.teacher_forced([1, 2], []) == []  # nothing to score: no request
        with pytest.raises(QualityError, match="unexpected prompt_logprobs"):
            endpoint.teacher_forced([1, 2], [3])
        # a gateway's HTML page: a 200 is not an answer; a 400's text is the refusal's reason
        pod.faults.html = True
        with pytest.raises(QualityError, match="/v1/chat/completions: not JSON"):
            endpoint.answer(prompt)
        pod.faults.status = 400
        with pytest.raises(Refused, match="HTTP 400: <html><body><h1>400 from the gateway"):
            endpoint.answer(prompt)


def test_golden_prompts_load_with_their_expectations(tmp_path: Path) -> None:
    path = tmp_path / "golden.jsonl"
    path.write_text(
        '{"id": "fr", "messages": [{"role": "user", "content": "capital?"}], '
        '"expect": {"any_of": ["Paris", "paris"]}, "max_tokens": 4}\n'
    )
    (prompt,) = load_prompts(path)
    assert (prompt.id, prompt.max_tokens) == ("fr", 4)
    assert prompt.expect is not None and prompt.expect.met_by(" paris ")


@pytest.mark.parametrize(
    ("line", "sent", "absent"),
    [
        ("", {"temperature": 0, "seed": 7}, set()),  # greedy by default
        # the server's own defaults: what a client sending nothing gets (generation_config)
        (', "sampling": "server"', {"seed": 7}, {"temperature", "top_p", "top_k"}),
        (
            ', "sampling": {"temperature": 0.7, "top_p": 0.9}',
            {"temperature": 0.7, "top_p": 0.9},
            set(),
        ),
    ],
    ids=["greedy", "server-defaults", "given"],
)
def test_each_prompt_is_sent_with_its_sampling_and_the_models_api_key(
    tmp_path: Path, line: str, sent: dict[str, float], absent: set[str]
) -> None:
    path = tmp_path / "golden.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}]' + line + "}\n")
    (prompt,) = load_prompts(path)
    with OpenAIStandin("pod", model="tiny-llama") as pod:
        endpoint = VllmEndpoint(pod.url, "tiny-llama", seed=7, max_tokens=4, api_key="sk-1")
        with pytest.raises(QualityError, match="unexpected chat answer"):  # not vLLM's shape
            endpoint.answer(prompt)
        (received,) = pod.received()
    assert received.body.items() >= sent.items(), received.body
    assert not absent & set(received.body), received.body
    assert received.body["logprobs"] is True and received.body["return_token_ids"] is True
    assert received.headers.get("authorization") == "Bearer sk-1"
