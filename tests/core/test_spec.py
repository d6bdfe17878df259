"""The spec is valid OpenAPI 3.1, its examples obey its schemas, and the server serves it."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from mockserver.core.errors import ApiError
from mockserver.core.spec import Spec, load_document, spec_path

from ..helpers import Api

DOC = load_document()
SPEC = Spec(DOC)
REGISTRY: Registry[Any] = Registry().with_resource(
    "urn:t", Resource.from_contents(DOC, default_specification=DRAFT202012)
)


def test_spec_is_valid_openapi_31() -> None:
    assert DOC["openapi"].startswith("3.1")
    validate(DOC)


def test_the_app_serves_exactly_the_spec_operations() -> None:
    """Every provider route of the app is an operation of the spec, and every operation a route:
    the spec cannot describe a path the fake does not serve, nor the fake serve one it leaves out."""
    from starlette.routing import Route

    from mockserver import Settings, create_app

    app = create_app(Settings())
    served = {
        (method.lower(), route.path)
        for route in app.routes
        if isinstance(route, Route) and not route.path.startswith(("/media/", "/openapi.", "/healthz"))
        for method in set(route.methods or ()) - {"HEAD"}
    }
    documented = {(method, path) for path, item in DOC["paths"].items() for method in item if method != "parameters"}
    assert served == documented


def _schema_of(ref: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({"$ref": "urn:t" + ref["$ref"]}, registry=REGISTRY)


def test_request_examples_obey_the_schemas() -> None:
    checked = 0
    for item in DOC["paths"].values():
        for operation in item.values():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if not content:
                continue
            validator = _schema_of(content["schema"])
            for example in content.get("examples", {}).values():
                validator.validate(example["value"])
                checked += 1
    assert checked >= 3  # the doc's two video examples and the imagine one


def test_schema_examples_obey_their_schemas() -> None:
    for name, schema in DOC["components"]["schemas"].items():
        if "example" in schema:
            _schema_of({"$ref": f"#/components/schemas/{name}"}).validate(schema["example"])


def test_spec_has_the_doc_examples_verbatim() -> None:
    examples = DOC["paths"]["/v1/midjourney/generations/video"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]
    assert examples["i2v_batch4"]["value"] == {
        "prompt": "the cat slowly turns its head to the camera",
        "image_urls": ["https://example.com/cat.png"],
        "motion": "high",
        "batch_size": 4,
    }
    assert examples["start_end"]["value"]["end_url"] == "https://example.com/sunset.jpg"


def test_relaxed_validator_keeps_other_rules() -> None:
    spec = Spec()
    relaxed = spec.validator("VideoRequest", relax=("batch_size",))
    assert relaxed.is_valid({"batch_size": 3})
    assert not relaxed.is_valid({"batch_size": "3"})
    assert not relaxed.is_valid({"video_type": "vid_1.1_i2v_extend_480"})
    assert not spec.validator("VideoRequest").is_valid({"batch_size": 3})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
near_valid = st.fixed_dictionaries(
    {},
    optional={
        "prompt": st.text(max_size=5) | st.integers(),
        "image_urls": st.lists(
            st.sampled_from(["https://e.x/a.png", "data:,x", "ftp://x", "HTTP://X", "x"]), max_size=2
        ),
        "task_id": st.text(max_size=3),
        "index": st.integers(-2, 5) | st.floats(-1, 5),
        "video_type": st.sampled_from([*SPEC.enum("VideoType"), "vid_1.1_i2v_extend_480", ""]),
        "motion": st.sampled_from(["low", "high", "mid", 1]),
        "batch_size": st.integers(-1, 6) | st.floats(0, 5) | st.booleans() | st.integers(2**63, 2**70),
        "end_url": st.sampled_from(["https://e.x/b.png", "", "nope", "data:image/png;base64,AAAA"]),
        "speed": st.sampled_from(["relax", "fast", "turbo", "warp"]),
        "size": st.sampled_from(["16:9", "1:1", "wide", "0:1"]),
    },
)


@settings(max_examples=400, deadline=None)
@given(body=near_valid | json_values, schema=st.sampled_from(["VideoRequest", "ImagineRequest"]), relax=st.booleans())
def test_every_invalid_body_is_described(body: Any, schema: str, relax: bool) -> None:
    """``check`` refuses exactly what the compiled validator rejects, always with a 400 in the
    provider's words, naming a field the body has (or the one it lacks)."""
    relaxed = ("batch_size",) if relax and schema == "VideoRequest" else ()
    valid = SPEC.is_valid(schema, body, relax=relaxed)
    try:
        SPEC.check(schema, body, relax=relaxed)
    except ApiError as error:
        assert not valid, body
        assert error.status == 400
        assert error.message
        if error.param is not None and isinstance(body, dict):
            top = error.param.split(".")[0].split("[")[0]
            assert top in body or "is required" in error.message, (body, error)
    else:
        assert valid, body


def test_served_spec_is_the_file(api: Api) -> None:
    as_yaml = api.client.get("/openapi.yaml")
    assert as_yaml.status_code == 200
    assert as_yaml.text == spec_path().read_text(encoding="utf-8")
    assert yaml.safe_load(as_yaml.text) == DOC
    as_json = api.client.get("/openapi.json")
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.json() == DOC
