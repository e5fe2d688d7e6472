"""The demo's quality-alone verdict on a canary's failing windows, table-driven (the headless
demo reaches it only after three real-vLLM windows)."""

import pytest

from sandbox.demo import failed_on_quality_alone

PASSING = {"success_rate": "Pass", "ttft_p99": "Pass", "prompt_identity": "Pass"}


@pytest.mark.parametrize(
    ("failing", "alone", "why"),
    [
        (
            [{**PASSING, "agreement": "Fail"}] * 3,
            True,
            "by the quality gate alone (agreement failed; every other measurement passed in "
            "its 3 failing windows)",
        ),
        (
            [{**PASSING, "agreement": "Fail", "logprob_drift": "Fail"}],
            True,
            "by the quality gate alone (agreement, logprob_drift failed; every other "
            "measurement passed in its 1 failing windows)",
        ),
        (
            [{**PASSING, "agreement": "Fail", "ttft_p99": "Fail"}],
            False,
            "not the quality gate alone: ttft_p99 Fail",
        ),
        (
            [{**PASSING, "agreement": "Fail", "success_rate": "Error"}],
            False,
            "not the quality gate alone: success_rate Error",
        ),
        (
            [{**PASSING, "success_rate": "Fail"}],
            False,
            "not the quality gate alone: success_rate Fail",
        ),
        ([{**PASSING, "agreement": "Pass"}], False, "not the quality gate alone: no quality Fail"),
        ([], False, "not the quality gate alone: no quality Fail"),
    ],
    ids=["agreement", "two-quality", "latency-too", "error-too", "no-quality", "all-pass", "none"],
)
def test_the_demo_tells_a_rollback_by_quality_alone(failing, alone, why):
    assert failed_on_quality_alone(failing) == (alone, why)
