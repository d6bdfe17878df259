"""Load ``spec/openapi.yaml`` once and validate request bodies with its schemas.

The schemas live only in the YAML file. This module compiles them (JSON Schema
2020-12, as OpenAPI 3.1 uses) twice: with ``jsonschema_rs`` (compiled Rust) for
the fast yes/no every request needs, and with ``jsonschema`` to describe a
refusal: the first violation becomes the provider's error body, naming the
field and the rule it broke. The two must agree; a test checks that they do.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .errors import ApiError, bad_request

SPEC_URI = "urn:mockserver:openapi"


PROVIDER = "openapi.yaml"
CONTROL = "control.yaml"


def spec_path(name: str = PROVIDER) -> Path:
    """A spec file: packaged inside the wheel, or ``spec/`` of a source checkout."""
    packaged = resources.files("mockserver").joinpath(f"_spec/{name}")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "spec" / name


def load_document(path: Path | None = None) -> dict[str, Any]:
    text = (path or spec_path()).read_text(encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    doc: dict[str, Any] = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    return doc


class Spec:
    """The provider's API as written in the spec: schemas, enums, validators."""

    def __init__(self, document: dict[str, Any] | None = None, *, name: str = PROVIDER) -> None:
        self.name = name
        self.document = document if document is not None else load_document(spec_path(name))
        self._registry: Registry[Any] = Registry().with_resource(
            SPEC_URI, Resource.from_contents(self.document, default_specification=DRAFT202012)
        )
        self._validators: dict[tuple[str, tuple[str, ...]], Draft202012Validator] = {}
        self._fast: dict[tuple[str, tuple[str, ...]], Any] = {}

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

    def validator(self, schema_name: str, *, relax: Iterable[str] = ()) -> Draft202012Validator:
        """A compiled validator for a component schema.

        ``relax`` names properties whose ``enum`` is dropped (kept type and bounds):
        the ``coerce`` batch-size policy accepts any integer and treats it as 1.
        """
        relaxed = tuple(sorted(relax))
        key = (schema_name, relaxed)
        found = self._validators.get(key)
        if found is None:
            registry, uri = self._registry, SPEC_URI
            document = self._relaxed(schema_name, relaxed)
            if relaxed:
                uri = f"{SPEC_URI}:relaxed:{schema_name}:{','.join(relaxed)}"
                resource = Resource.from_contents(document, default_specification=DRAFT202012)
                registry = registry.with_resource(uri, resource)
            found = Draft202012Validator({"$ref": f"{uri}#/components/schemas/{schema_name}"}, registry=registry)
            self._validators[key] = found
            root = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
            self._fast[key] = jsonschema_rs.Draft202012Validator(root)
        return found

    def _relaxed(self, schema_name: str, relaxed: tuple[str, ...]) -> dict[str, Any]:
        if not relaxed:
            return self.document
        document = copy.deepcopy(self.document)
        for prop in relaxed:
            document["components"]["schemas"][schema_name]["properties"][prop].pop("enum", None)
        return document

    def is_valid(self, schema_name: str, body: Any, *, relax: Iterable[str] = ()) -> bool:
        """The fast check (compiled Rust)."""
        key = (schema_name, tuple(sorted(relax)))
        if key not in self._fast:
            self.validator(schema_name, relax=relax)
        return bool(self._fast[key].is_valid(body))

    def check(self, schema_name: str, body: Any, *, relax: Iterable[str] = ()) -> None:
        """Raise the provider's 400 for the first rule ``body`` breaks."""
        if self.is_valid(schema_name, body, relax=relax):
            return
        validator = self.validator(schema_name, relax=relax)
        error = _first_error(validator.iter_errors(body))
        if error is not None:
            raise to_api_error(error)


_RULE_RANK = {"type": 0, "required": 1}


def _first_error(errors: Iterable[ValidationError]) -> ValidationError | None:
    # The shallowest error first (a wrong top-level type before a wrong item), a wrong
    # type before a wrong value, then by field name: the same answer on every run.
    ordered = sorted(
        errors,
        key=lambda e: (
            len(e.absolute_path),
            _RULE_RANK.get(str(e.validator), 2),
            [str(p) for p in e.absolute_path],
            str(e.validator),
        ),
    )
    return ordered[0] if ordered else None


_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def field_name(path: Iterable[Any]) -> str | None:
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


def to_api_error(error: ValidationError) -> ApiError:
    """Say which field broke which rule, in words a client developer can act on."""
    param = field_name(error.absolute_path)
    rule = error.validator
    expected = error.validator_value
    value: Any = error.instance
    subject = param or "request body"
    if rule == "required":
        missing = error.message.split("'")[1] if "'" in error.message else str(expected)
        return bad_request(f"{missing} is required", missing)
    if rule == "type":
        wanted = " or ".join(expected) if isinstance(expected, list) else expected
        got = _JSON_TYPES.get(type(value), type(value).__name__)
        return bad_request(f"{subject} must be of type {wanted}, not {got}", param)
    if rule in ("enum", "const"):
        allowed = expected if isinstance(expected, list) else [expected]
        shown = ", ".join(json.dumps(v) for v in allowed)
        return bad_request(f"{subject} must be one of {shown} (got {_short(value)})", param)
    if rule == "minimum":
        return bad_request(f"{subject} must be >= {expected} (got {_short(value)})", param)
    if rule == "maximum":
        return bad_request(f"{subject} must be <= {expected} (got {_short(value)})", param)
    if rule == "minItems":
        return bad_request(f"{subject} must have at least {expected} item(s) (got {len(value)})", param)
    if rule == "maxItems":
        return bad_request(f"{subject} must have at most {expected} item(s) (got {len(value)})", param)
    if rule == "minLength":
        return bad_request(
            f"{subject} must not be empty" if expected == 1 else f"{subject} is shorter than {expected} characters",
            param,
        )
    if rule == "maxLength":
        return bad_request(f"{subject} is longer than {expected} characters", param)
    if rule == "pattern":
        return bad_request(f"{subject} is not in the expected form (got {_short(value)})", param)
    return bad_request(f"{subject}: {error.message}", param)


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else json.dumps(value[: limit + 1])
    return text if len(text) <= limit else text[: limit - 1] + '…"'
