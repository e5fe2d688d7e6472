"""Kubernetes quantities and Prometheus durations, parsed to plain numbers."""

from __future__ import annotations

import re
from decimal import Decimal

_QUANTITY = re.compile(r"^(?P<number>[0-9]+(\.[0-9]+)?)(?P<suffix>[numkMGTPE]|[KMGTPE]i)?$")
_SUFFIX_FACTORS: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
# Prometheus's duration grammar (prometheus/common model.ParseDuration): units from the
# largest down, each at most once, e.g. '1h30m'; a year is 365 days, as Prometheus counts it.
_DURATION = re.compile(
    r"^((?P<y>[0-9]+)y)?((?P<w>[0-9]+)w)?((?P<d>[0-9]+)d)?((?P<h>[0-9]+)h)?"
    r"((?P<m>[0-9]+)m)?((?P<s>[0-9]+)s)?((?P<ms>[0-9]+)ms)?$"
)
_DURATION_MILLISECONDS = {
    "y": 365 * 86400 * 1000,
    "w": 7 * 86400 * 1000,
    "d": 86400 * 1000,
    "h": 3600 * 1000,
    "m": 60 * 1000,
    "s": 1000,
    "ms": 1,
}


def parse_quantity(text: str) -> Decimal:
    """Return the value of a Kubernetes quantity ('500m' → 0.5, '16Gi' → 17179869184)."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(
            f"'{text}' is not a Kubernetes quantity; expected e.g. '8', '500m', '64Gi'"
        )
    return Decimal(match["number"]) * _SUFFIX_FACTORS[match["suffix"] or ""]


def parse_duration_seconds(text: str) -> int:
    """Return the whole seconds in a Prometheus duration ('5m' → 300, '1m30s' → 90)."""
    match = _DURATION.match(text)
    if not text or not match:
        raise ValueError(
            f"'{text}' is not a Prometheus duration; expected e.g. '30s', '5m', '1m30s' or '1h'"
        )
    milliseconds = sum(
        int(number) * _DURATION_MILLISECONDS[unit]
        for unit, number in match.groupdict().items()
        if number is not None
    )
    if milliseconds % 1000:
        raise ValueError(f"'{text}' is not a whole number of seconds")
    return milliseconds // 1000
