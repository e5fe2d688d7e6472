"""The text chart of a gate window: one shared scale per metric, gaps where data is missing."""

from __future__ import annotations

import math

from llm_rollout.monitoring.chart import sparkline, window_chart


def test_a_sparkline_spans_its_scale_and_marks_gaps() -> None:
    assert sparkline([0.0, 0.5, 1.0, math.nan], 0.0, 1.0) == "▁▅█·"
    assert sparkline([2.0, 2.0], 2.0, 2.0) == "▁▁"  # a flat line, not a division by zero


def test_canary_and_stable_share_one_scale_so_a_slower_canary_stands_out() -> None:
    chart = window_chart(
        {
            ("itl_mean", "canary"): [0.4, 0.4, 0.4],
            ("itl_mean", "stable"): [0.1, 0.1, 0.1],
            ("ttft_mean", "canary"): [],
        },
        "means",
    )
    lines = chart.splitlines()
    assert lines[0] == "means"
    assert lines[1].endswith("canary ███") and lines[2].endswith("stable ▁▁▁")
    assert "scale  0.1 … 0.4" in lines[3]
    assert lines[4].startswith("ttft_mean") and "no data" in lines[4]
