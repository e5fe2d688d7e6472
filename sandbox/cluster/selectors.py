"""Label and field selectors, as the Kubernetes API parses them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Match = Callable[[dict[str, Any]], bool]
_SET = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    if current.strip():
        terms.append(current)
    return [term.strip() for term in terms if term.strip()]


def label_matcher(selector: str | None) -> Callable[[dict[str, str]], bool]:
    """A predicate on a label dict for 'a=b,c!=d,e in (x,y),f notin (z),g,!h'."""
    if not selector:
        return lambda labels: True
    checks: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_terms(selector):
        set_match = _SET.match(term)
        if set_match:
            key, operator, values = set_match[1], set_match[2], set_match[3]
            allowed = {v.strip() for v in values.split(",") if v.strip()}
            if operator == "in":
                checks.append(lambda labels, k=key, a=allowed: labels.get(k) in a)
            else:
                checks.append(lambda labels, k=key, a=allowed: labels.get(k) not in a)
        elif "!=" in term:
            key, value = (part.strip() for part in term.split("!=", 1))
            checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in term:
            key, value = (part.strip() for part in term.replace("==", "=").split("=", 1))
            checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif term.startswith("!"):
            absent = term[1:].strip()
            checks.append(lambda labels, k=absent: k not in labels)
        else:
            checks.append(lambda labels, k=term: k in labels)
    return lambda labels: all(check(labels) for check in checks)


def selector_from_match_labels(selector: dict[str, Any] | None) -> Callable[[dict[str, str]], bool]:
    """A predicate for a LabelSelector object ({matchLabels, matchExpressions})."""
    selector = selector or {}
    match_labels: dict[str, str] = selector.get("matchLabels") or {}
    expressions: list[dict[str, Any]] = selector.get("matchExpressions") or []

    def matches(labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in match_labels.items()):
            return False
        for expression in expressions:
            key, operator = expression["key"], expression["operator"]
            values = set(expression.get("values") or [])
            present = key in labels
            if operator == "In" and labels.get(key) not in values:
                return False
            if operator == "NotIn" and present and labels[key] in values:
                return False
            if operator == "Exists" and not present:
                return False
            if operator == "DoesNotExist" and present:
                return False
        return True

    return matches


def field_matcher(selector: str | None) -> Match:
    """A predicate on an object for 'metadata.name=x,status.phase!=Running'."""
    if not selector:
        return lambda obj: True
    checks: list[Match] = []
    for term in _split_terms(selector):
        negate = "!=" in term
        path, value = (p.strip() for p in term.replace("!=", "=").replace("==", "=").split("=", 1))

        def check(obj: dict[str, Any], p: str = path, v: str = value, n: bool = negate) -> bool:
            current: Any = obj
            for part in p.split("."):
                current = current.get(part) if isinstance(current, dict) else None
            return (str(current if current is not None else "") == v) != n

        checks.append(check)
    return lambda obj: all(check(obj) for check in checks)
