"""The gate check's result for a judged window, on plain values: every measurement's outcome
as JSON for scripts, and a Markdown table that stays a table when a quality row quotes model
answers (which may hold `|`, newlines or backslashes)."""

from __future__ import annotations

from llm_rollout.assets.release import gate_evaluation
from llm_rollout.monitoring.gate import Measurement, Outcome, Verdict
from llm_rollout.rollout.machine import Phase, RolloutRecord
from llm_rollout.spec import load_spec
from tests.conftest import DEMO_SPEC


def test_each_measurement_outcome_is_in_the_metadata_and_answers_stay_in_their_cell() -> None:
    verdict = Verdict(
        Outcome.FAIL,
        "agreement: answers changed",
        [
            Measurement("ttft_p99", 0.1, 0.1, "≤ 2s", Outcome.PASS, "within limits"),
            Measurement(
                "agreement",
                0.25,
                1.0,
                "≥ 0.9",
                Outcome.FAIL,
                "greeting: differs from token 2; canary 'a|b\nc', stable 'a\\b'",
            ),
        ],
    )
    record = RolloutRecord("rel-new", Phase.GATING, failures=1)
    evaluation = gate_evaluation(load_spec(DEMO_SPEC), record, verdict)
    assert evaluation.metadata["outcomes"].value == {"ttft_p99": "Pass", "agreement": "Fail"}
    table = str(evaluation.metadata["measurements"].value).splitlines()
    assert len(table) == 2 + 2  # header, rule, one row per measurement
    agreement = table[-1]
    assert agreement.count(" | ") == 4  # five cells: the answer's pipe is escaped
    assert "'a\\|b c'" in agreement and "'a\\\\b'" in agreement
