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
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_quantity(text: str) -> Decimal:
    """Return the value of a Kubernetes quantity ('500m' → 0.5, '16Gi' → 17179869184)."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(
            f"'{text}' is not a Kubernetes quantity; expected e.g. '8', '500m', '64Gi'"
        )
    return Decimal(match["number"]) * _SUFFIX_FACTORS[match["suffix"] or ""]


def parse_duration_seconds(text: str) -> int:
    """Return the seconds in a single-unit Prometheus duration ('5m' → 300)."""
    return int(text[:-1]) * _DURATION_UNITS[text[-1]]
