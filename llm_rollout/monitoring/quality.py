"""The output-quality gate: golden prompts sent to a canary pod and a stable pod directly,
greedy, and compared — what latency, errors and KV cache cannot see (a changed chat template
or tokenizer, re-quantized or re-uploaded weights, a flipped generation default).

Four measurements, judged with the gate's own outcomes (`monitoring.gate.Outcome`):
  prompt_identity  the prompt token ids of every golden conversation are the same on both
                   tracks (vLLM's `/tokenize` with the messages): a different chat template or
                   tokenizer fails, unless the spec allows it;
  agreement        the share of prompts whose greedy answer is token-for-token stable's;
  logprob_drift    the mean absolute difference of the log-probabilities the two tracks give
                   to stable's own greedy tokens (the canary is teacher-forced along stable's
                   answer with vLLM's `prompt_logprobs`);
  expectations     the share of prompts whose answer meets its `expect`, canary vs stable.
A pod that cannot be reached, or answers nonsense, is an Error — never a Pass. A canary that
refuses a golden prompt stable answered (vLLM's HTTP 400: its chat template raised, the prompt
does not fit its context) has answered it worse: a changed answer, judged by `agreement`.

vLLM API used (vLLM 0.32, `vllm/entrypoints/serve/tokenize/protocol.py`,
`vllm/entrypoints/openai/{chat_completion,completion}/protocol.py`): `POST /tokenize` with
`messages`; `POST /v1/chat/completions` with `temperature: 0`, `seed`, `logprobs: true` and
`return_token_ids: true` (the prompt's and the answer's token ids); `POST /v1/completions`
with a prompt of token ids, `max_tokens: 1` and `prompt_logprobs: 0` (the log-probability of
each prompt token given the ones before it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from llm_rollout.monitoring.gate import Measurement, Outcome

# One golden prompt must answer well inside a sensor tick (60 s for the whole tick).
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_PROMPTS = 64  # a tick sends 3 requests per prompt to each track
WORST_SHOWN = 3  # prompts shown side by side in the table
# the names of the measurements judge_quality adds to a window's verdict
MEASUREMENTS = ("prompt_identity", "agreement", "logprob_drift", "expectations")
SERVER_SAMPLING = "server"
# vLLM's sampling parameters a golden prompt may set (SamplingParams; the OpenAI names)
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


class QualityError(Exception):
    """A golden prompt file that cannot be used, or a track that cannot be measured."""


class Refused(QualityError):
    """The pod rejected the request as invalid for it (HTTP 400, vLLM's answer to a chat
    template that raises or a prompt beyond its context): a measurement of the pod, unlike a
    pod that cannot be reached."""


@dataclass(frozen=True)
class Expectation:
    """What a good answer looks like: exact text, a regular expression, or one of a list."""

    exact: str | None = None
    regex: str | None = None
    any_of: tuple[str, ...] = ()

    def met_by(self, answer: str) -> bool:
        text = answer.strip()
        if self.exact is not None:
            return text == self.exact.strip()
        if self.regex is not None:
            return re.search(self.regex, text) is not None
        return text in {a.strip() for a in self.any_of}


@dataclass(frozen=True)
class GoldenPrompt:
    """One conversation of the golden set."""

    id: str
    messages: list[dict[str, Any]]
    expect: Expectation | None = None
    max_tokens: int | None = None
    # None: greedy (temperature 0); "server": the server's own defaults (what a client that
    # sends no sampling parameters gets: the model's generation_config.json); or parameters
    sampling: str | dict[str, float] | None = None

    def sampling_parameters(self) -> dict[str, float]:
        """What the request carries besides the fixed seed: a changed generation default
        shows up only in answers to prompts that leave sampling to the server."""
        if self.sampling is None:
            return {"temperature": 0}
        if self.sampling == SERVER_SAMPLING:
            return {}
        assert isinstance(self.sampling, dict)
        return dict(self.sampling)


def load_prompts(path: Path) -> list[GoldenPrompt]:
    """The golden prompts of a JSONL file: one object per line with `messages` (chat
    messages), optional `id`, `expect` ({"exact"|"regex"|"any_of": …}), `max_tokens` and
    `sampling` ("server", or {"temperature": …, "top_p": …}; default greedy)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise QualityError(f"{path}: cannot read the golden prompts: {error}") from error
    prompts: list[GoldenPrompt] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise QualityError(f"{where}: not JSON: {error.msg}") from error
        if not isinstance(row, dict) or not isinstance(row.get("messages"), list):
            raise QualityError(f"{where}: each line needs `messages`, a list of chat messages")
        prompts.append(
            GoldenPrompt(
                str(row.get("id") or f"line {number}"),
                row["messages"],
                _expectation(row.get("expect"), where),
                row.get("max_tokens"),
                _sampling(row.get("sampling"), where),
            )
        )
    if not prompts:
        raise QualityError(f"{path}: no golden prompts")
    if len(prompts) > MAX_PROMPTS:
        raise QualityError(f"{path}: {len(prompts)} prompts; at most {MAX_PROMPTS} per tick")
    return prompts


def _sampling(raw: object, where: str) -> str | dict[str, float] | None:
    if raw is None or raw == SERVER_SAMPLING:
        return raw
    problem = (
        f'{where}: `sampling` is "{SERVER_SAMPLING}" (the server\'s defaults) or an object of '
        f"{', '.join(SAMPLING_KEYS)}"
    )
    if not isinstance(raw, dict) or not raw:
        raise QualityError(problem)
    unknown = sorted(set(raw) - set(SAMPLING_KEYS))
    if unknown:
        raise QualityError(f"{problem}; not {', '.join(unknown)}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw.values()):
        raise QualityError(f"{problem}, with numbers")
    return {str(k): float(v) for k, v in raw.items()}


def _expectation(raw: object, where: str) -> Expectation | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or len(raw) != 1:
        raise QualityError(f"{where}: `expect` is one of exact, regex or any_of")
    ((kind, value),) = raw.items()
    if kind == "exact" and isinstance(value, str):
        return Expectation(exact=value)
    if kind == "regex" and isinstance(value, str):
        try:
            re.compile(value)
        except re.error as error:
            raise QualityError(f"{where}: `expect.regex` does not compile: {error}") from error
        return Expectation(regex=value)
    if kind == "any_of" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return Expectation(any_of=tuple(value))
    raise QualityError(f"{where}: `expect` is one of exact, regex or any_of (got {kind})")


@dataclass(frozen=True)
class Answer:
    """One track's greedy answer to one golden prompt."""

    prompt_ids: list[int]
    output_ids: list[int]
    text: str
    logprobs: list[float]  # of each output token, as the track chose it
    refused: str = ""  # why the track rejected the prompt (then no ids, text or logprobs)

    @classmethod
    def refusal(cls, why: str) -> Answer:
        return cls([], [], "", [], refused=why)


@dataclass(frozen=True)
class Sample:
    """A golden prompt as both tracks answered it, and the canary teacher-forced along
    stable's answer (its log-probabilities of stable's tokens)."""

    prompt: GoldenPrompt
    canary: Answer
    stable: Answer
    canary_on_stable: list[float]


class VllmEndpoint:
    """One vLLM pod, spoken to directly (not through the Service)."""

    def __init__(
        self, url: str, model: str, seed: int, max_tokens: int, api_key: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.seed = seed
        self.max_tokens = max_tokens
        # vLLM started with an API key refuses /v1/* without it (401)
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def answer(self, prompt: GoldenPrompt) -> Answer:
        """The answer (greedy unless the prompt says otherwise; always the same seed) with
        its token ids and log-probabilities."""
        body = self._post(
            "/v1/chat/completions",
            {
                "model": self.model,
                "messages": prompt.messages,
                **prompt.sampling_parameters(),
                "seed": self.seed,
                "max_tokens": prompt.max_tokens or self.max_tokens,
                "logprobs": True,
                "return_token_ids": True,
            },
        )
        try:
            choice = body["choices"][0]
            content = choice["logprobs"]["content"] or []
            return Answer(
                list(body["prompt_token_ids"]),
                list(choice["token_ids"]),
                choice["message"]["content"] or "",
                [float(t["logprob"]) for t in content],
            )
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise QualityError(f"{self.url}: unexpected chat answer ({error})") from error

    def teacher_forced(self, prompt_ids: Sequence[int], output_ids: Sequence[int]) -> list[float]:
        """This track's log-probability of each of `output_ids` after `prompt_ids`."""
        if not output_ids:
            return []
        body = self._post(
            "/v1/completions",
            {
                "model": self.model,
                "prompt": [*prompt_ids, *output_ids],
                "max_tokens": 1,
                "temperature": 0,
                "prompt_logprobs": 0,
            },
        )
        try:
            rows = body["choices"][0]["prompt_logprobs"][len(prompt_ids) :]
            return [
                float(row[str(token)]["logprob"])
                for row, token in zip(rows, output_ids, strict=True)
            ]
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise QualityError(f"{self.url}: unexpected prompt_logprobs ({error})") from error

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = requests.post(
                self.url + path,
                json=payload,
                headers=self.headers,
                timeout=REQUEST_TIMEOUT_SECONDS,
            )
        except requests.RequestException as error:
            raise QualityError(f"{self.url}{path}: unreachable ({error})") from error
        if response.status_code == 400:
            raise Refused(f"{self.url}{path}: HTTP 400: {_error_message(response)}")
        if response.status_code != 200:
            raise QualityError(
                f"{self.url}{path}: HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            found: dict[str, Any] = response.json()
        except ValueError as error:
            raise QualityError(f"{self.url}{path}: not JSON") from error
        return found


def _error_message(response: requests.Response) -> str:
    """vLLM's error text (`{"error": {"message": ...}}`), else the body's start."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text
    return str(message)[:200]


def collect(
    prompts: Sequence[GoldenPrompt], canary: VllmEndpoint, stable: VllmEndpoint
) -> list[Sample]:
    """Both tracks' answers to every golden prompt, and the canary along stable's answers.
    Stable refusing a prompt is an error of the golden set (raised); the canary refusing
    one stable answered is the canary's answer."""
    samples = []
    for prompt in prompts:
        stable_answer = stable.answer(prompt)
        try:
            canary_answer = canary.answer(prompt)
        except Refused as refused:
            samples.append(Sample(prompt, Answer.refusal(str(refused)), stable_answer, []))
            continue
        forced = canary.teacher_forced(stable_answer.prompt_ids, stable_answer.output_ids)
        samples.append(Sample(prompt, canary_answer, stable_answer, forced))
    return samples


@dataclass(frozen=True)
class QualityLimits:
    """The quality gate's limits (the spec's `quality` section)."""

    min_agreement: float
    max_logprob_drift: float
    max_expectation_drop: float
    allow_prompt_change: bool = False


@dataclass(frozen=True)
class QualityReport:
    """Every number the quality gate measured, and the prompts that differ most."""

    prompts: int
    same_prompt: int
    same_answer: int
    drift: float
    canary_met: int
    stable_met: int
    expected: int
    worst: list[str] = field(default_factory=list)
    refused: int = 0  # prompts the canary rejected (HTTP 400) that stable answered


def compare(samples: Sequence[Sample]) -> QualityReport:
    """Compare both tracks over the golden set (pure)."""
    drifts: list[float] = []
    ranked: list[tuple[float, str]] = []
    canary_met = stable_met = expected = same_prompt = same_answer = refused = 0
    for s in samples:
        if s.prompt.expect is not None:
            expected += 1
            canary_met += not s.canary.refused and s.prompt.expect.met_by(s.canary.text)
            stable_met += s.prompt.expect.met_by(s.stable.text)
        if s.canary.refused:  # no tokens to compare: a changed answer, ranked first
            refused += 1
            ranked.append(
                (
                    math.inf,
                    f"{s.prompt.id}: canary refused it ({s.canary.refused[-120:]}); stable "
                    f"{s.stable.text[:80]!r}",
                )
            )
            continue
        same_prompt += s.canary.prompt_ids == s.stable.prompt_ids
        same_answer += s.canary.output_ids == s.stable.output_ids
        gaps = [
            abs(c - t)
            for c, t in zip(s.canary_on_stable, s.stable.logprobs, strict=False)
            if math.isfinite(c) and math.isfinite(t)
        ]
        drift = sum(gaps) / len(gaps) if gaps else 0.0
        drifts.extend(gaps)
        if s.canary.output_ids != s.stable.output_ids:
            at = _first_difference(s.canary.output_ids, s.stable.output_ids)
            ranked.append(
                (
                    drift + 1.0,
                    f"{s.prompt.id}: differs from token {at}; canary {s.canary.text[:80]!r}, "
                    f"stable {s.stable.text[:80]!r}",
                )
            )
    worst = [text for _, text in sorted(ranked, reverse=True)[:WORST_SHOWN]]
    mean_drift = sum(drifts) / len(drifts) if drifts else 0.0
    return QualityReport(
        len(samples),
        same_prompt,
        same_answer,
        mean_drift,
        canary_met,
        stable_met,
        expected,
        worst,
        refused,
    )


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def judge_quality(limits: QualityLimits, report: QualityReport) -> list[Measurement]:
    """The quality measurements with their outcomes, in the gate's vocabulary."""
    if report.prompts == 0:
        return [
            Measurement(
                "quality", None, None, "golden prompts", Outcome.ERROR, "no prompt measured"
            )
        ]
    n = report.prompts
    # prompt tokens are compared where the canary answered (a refusal has none)
    tokenized = n - report.refused
    identity = report.same_prompt / tokenized if tokenized else 1.0
    agreement = report.same_answer / n
    worst = "; ".join(report.worst) or "every answer identical"
    if report.refused:
        worst = f"the canary refused {report.refused} of {n} prompts stable answered; {worst}"
    changed = tokenized - report.same_prompt
    measurements = [
        Measurement(
            "prompt_identity",
            identity,
            1.0,
            "allowed to change" if limits.allow_prompt_change else "= 1 (same prompt tokens)",
            Outcome.PASS if changed == 0 or limits.allow_prompt_change else Outcome.FAIL,
            "same prompt tokens"
            if changed == 0
            else f"{changed} of {tokenized} prompts tokenize differently: the chat template or "
            "tokenizer changed",
        ),
        Measurement(
            "agreement",
            agreement,
            1.0,
            f"≥ {limits.min_agreement:g}",
            Outcome.PASS if agreement >= limits.min_agreement else Outcome.FAIL,
            "within limits" if agreement >= limits.min_agreement else worst,
        ),
        Measurement(
            "logprob_drift",
            report.drift,
            0.0,
            f"≤ {limits.max_logprob_drift:g}",
            Outcome.PASS if report.drift <= limits.max_logprob_drift else Outcome.FAIL,
            "within limits"
            if report.drift <= limits.max_logprob_drift
            else f"mean |Δ logprob| {report.drift:.4g} along stable's answers",
        ),
    ]
    if report.expected:
        canary_share = report.canary_met / report.expected
        stable_share = report.stable_met / report.expected
        dropped = stable_share - canary_share > limits.max_expectation_drop + 1e-9
        measurements.append(
            Measurement(
                "expectations",
                canary_share,
                stable_share,
                f"≥ stable − {limits.max_expectation_drop:g}",
                Outcome.FAIL if dropped else Outcome.PASS,
                f"{report.canary_met} of {report.expected} met (stable {report.stable_met})",
            )
        )
    return measurements
