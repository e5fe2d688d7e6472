"""Custom resources' schemas (a CRD's openAPIV3Schema) as the API server enforces them."""

from __future__ import annotations

from typing import Any


def strict_schema(schema: Any) -> Any:
    """A CRD's openAPIV3Schema made strict: an object with `properties` refuses a field it
    does not define (as the API server's strict field validation reports it), unless the
    schema keeps unknown fields (`x-kubernetes-preserve-unknown-fields`)."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: strict_schema(value) for key, value in schema.items()}
    if (
        "properties" in strict
        and "additionalProperties" not in strict
        and not strict.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict
