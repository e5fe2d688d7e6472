"""A small text chart of a gate window: canary and stable over time on one scale per metric,
as sparklines the Dagster UI shows in an asset check's metadata (and a terminal prints)."""

from __future__ import annotations

import math

from llm_rollout.monitoring.queries import TRACKS

BARS = "▁▂▃▄▅▆▇█"
Series = dict[tuple[str, str], list[float]]  # (metric, track) → values over the window


def sparkline(values: list[float], low: float, high: float) -> str:
    """One character per value on the scale [low, high]; a gap (·) where there is no value."""
    span = high - low
    chars = []
    for value in values:
        if math.isnan(value):
            chars.append("·")
            continue
        level = 0 if span <= 0 else round((value - low) / span * (len(BARS) - 1))
        chars.append(BARS[max(0, min(len(BARS) - 1, level))])
    return "".join(chars)


def window_chart(series: Series, title: str) -> str:
    """Canary and stable of every metric in `series`, one line per track, shared scale."""
    lines = [title]
    for metric in sorted({metric for metric, _ in series}):
        tracks = {track: series.get((metric, track), []) for track in TRACKS}
        known = [v for values in tracks.values() for v in values if not math.isnan(v)]
        if not known:
            lines.append(f"{metric:10} no data")
            continue
        low, high = min(known), max(known)
        for index, track in enumerate(TRACKS):
            label = metric if index == 0 else ""
            line = sparkline(tracks[track], low, high) or "no data"
            lines.append(f"{label:10} {track:6} {line}")
        lines.append(f"{'':10} scale  {low:.4g} … {high:.4g}")
    return "\n".join(lines)
