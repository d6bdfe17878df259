"""Load ``spec/openapi.yaml`` once and validate request bodies with its schemas.

The schemas live only in the YAML file. This module compiles them once with
``jsonschema_rs`` (JSON Schema 2020-12, as OpenAPI 3.1 uses; compiled Rust):
the valid case costs one fast yes/no, and a refusal is described from the
first violation the validator reports (its kind and instance path), which
becomes the provider's error body naming the field and the rule it broke.
The validator stops at that first violation, so a body with a million bad
items costs no more to refuse than one with a single bad item.
"""

from __future__ import annotations

import copy
import json
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

from .errors import ApiError, bad_request

PROVIDER = "openapi.yaml"
CONTROL = "control.yaml"


def spec_path(name: str = PROVIDER) -> Path:
    """A spec file: packaged inside the wheel, or ``spec/`` of a source checkout."""
    packaged = resources.files("mockserver").joinpath(f"_spec/{name}")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "spec" / name


def load_document(path: Path | None = None) -> dict[str, Any]:
    text = (path or spec_path()).read_text(encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    doc: dict[str, Any] = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    return doc


@cache
def _shared(name: str) -> Spec:
    return Spec(name=name)


class Spec:
    """The provider's API as written in the spec: schemas, enums, validators."""

    def __init__(self, document: dict[str, Any] | None = None, *, name: str = PROVIDER) -> None:
        self.name = name
        self.document = document if document is not None else load_document(spec_path(name))
        self._validators: dict[tuple[str, tuple[str, ...]], Any] = {}

    @classmethod
    def shared(cls, name: str = PROVIDER) -> Spec:
        """The packaged spec ``name``, parsed and compiled once per process: every app built in the
        process (a test's fresh fake) shares it; nothing in a ``Spec`` changes after it is built."""
        return _shared(name)

    # -- reading ----------------------------------------------------------------------

    def schema(self, name: str) -> dict[str, Any]:
        schema: dict[str, Any] = self.document["components"]["schemas"][name]
        return schema

    def enum(self, schema_name: str, prop: str | None = None) -> list[Any]:
        schema = self.schema(schema_name)
        if prop is not None:
            schema = self._deref(schema["properties"][prop])
        return list(schema["enum"])

    def default(self, schema_name: str, prop: str) -> Any:
        return self._deref(self.schema(schema_name)["properties"][prop]).get("default")

    def _deref(self, node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref")
        if ref is None:
            return node
        return self.schema(ref.rsplit("/", 1)[-1])

    @cached_property
    def yaml_text(self) -> str:
        return spec_path(self.name).read_text(encoding="utf-8")

    @cached_property
    def json_bytes(self) -> bytes:
        return json.dumps(self.document, ensure_ascii=False).encode()

    # -- validating -------------------------------------------------------------------

    def validator(self, schema_name: str, *, relax: tuple[str, ...] = ()) -> Any:
        """The compiled validator of a component schema (a ``jsonschema_rs`` validator).

        ``relax`` names properties whose ``enum`` is dropped (kept type and bounds):
        the ``coerce`` batch-size policy accepts any integer and treats it as 1.
        """
        found = self._validators.get((schema_name, relax))  # as asked (every request asks alike)
        if found is not None:
            return found
        key = (schema_name, tuple(sorted(relax)))
        found = self._validators.get(key)
        if found is None:
            document = self.document
            if relax:
                document = copy.deepcopy(document)
                for prop in relax:
                    document["components"]["schemas"][schema_name]["properties"][prop].pop("enum", None)
            root = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
            found = self._validators[key] = jsonschema_rs.Draft202012Validator(root)
        self._validators[(schema_name, relax)] = found
        return found

    def is_valid(self, schema_name: str, body: Any, *, relax: tuple[str, ...] = ()) -> bool:
        return bool(self.validator(schema_name, relax=relax).is_valid(body))

    def check(self, schema_name: str, body: Any, *, relax: tuple[str, ...] = ()) -> None:
        """Raise the provider's 400 for the first rule ``body`` breaks."""
        validator = self.validator(schema_name, relax=relax)
        if validator.is_valid(body):
            return
        try:
            validator.validate(body)
        except jsonschema_rs.ValidationError as error:
            raise to_api_error(error) from None


_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def field_name(path: Any) -> str | None:
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


def to_api_error(error: Any) -> ApiError:
    """Say which field broke which rule, in words a client developer can act on.

    ``error`` is a ``jsonschema_rs.ValidationError``: its ``kind`` names the rule and
    carries the schema's value for it; ``instance_path`` names the field.
    """
    param = field_name(error.instance_path)
    kind = error.kind
    rule: str = kind.name
    value: Any = error.instance
    subject = param or "request body"
    if rule == "required":
        missing = str(kind.property)
        return bad_request(f"{missing} is required", field_name([*error.instance_path, missing]))
    if rule == "type":
        types = [str(t).rsplit(".", 1)[-1].lower() for t in _types(kind)]
        wanted = " or ".join(types) if types else "the documented type"
        got = _JSON_TYPES.get(type(value), type(value).__name__)
        return bad_request(f"{subject} must be of type {wanted}, not {got}", param)
    if rule in ("enum", "const"):
        allowed = kind.options if rule == "enum" else [kind.expected_value]
        shown = ", ".join(json.dumps(v) for v in allowed)
        return bad_request(f"{subject} must be one of {shown} (got {_short(value)})", param)
    if rule in ("minimum", "exclusiveMinimum"):
        return bad_request(f"{subject} must be >= {kind.limit} (got {_short(value)})", param)
    if rule in ("maximum", "exclusiveMaximum"):
        return bad_request(f"{subject} must be <= {kind.limit} (got {_short(value)})", param)
    if rule == "minItems":
        return bad_request(f"{subject} must have at least {kind.limit} item(s) (got {len(value)})", param)
    if rule == "maxItems":
        return bad_request(f"{subject} must have at most {kind.limit} item(s) (got {len(value)})", param)
    if rule == "minLength":
        return bad_request(
            f"{subject} must not be empty" if kind.limit == 1 else f"{subject} is shorter than {kind.limit} characters",
            param,
        )
    if rule == "maxLength":
        return bad_request(f"{subject} is longer than {kind.limit} characters", param)
    if rule == "pattern":
        return bad_request(f"{subject} is not in the expected form (got {_short(value)})", param)
    if rule == "additionalProperties":
        unexpected = ", ".join(str(u) for u in kind.unexpected)
        return bad_request(f"{subject}: unknown field(s) {unexpected}", param)
    return bad_request(f"{subject}: {_short(error.message, 200)}", param)


def _types(kind: Any) -> list[Any]:
    types = kind.types
    return list(types) if isinstance(types, list | tuple) else [types]


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, str):
        text = json.dumps(value[: limit + 1])
    elif isinstance(value, list | dict):
        text = json.dumps(value if len(value) <= 8 else f"<{type(value).__name__} of {len(value)}>")
    else:
        text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + '…"'
