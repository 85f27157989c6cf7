"""The published contract (issue 17, item 4): GET /api/v1/openapi.json is an OpenAPI 3.1 document that
agrees with the route table — every /api/v1 route, its methods, the permission it requires and the
schemas it declares — and docs/openapi.json is that same document."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import schemathesis

from appliance.api.openapi import OPENAPI, documented
from appliance.boundary.routes import PUBLIC, route_table
from appliance.boundary.validation import schema_of
from tests.access.helpers import api_key, auth, token
from tests.support.openapi import current_document, render

SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
ARGUMENT = re.compile(r"<(?:\w+(?:\([^)]*\))?:)?(\w+)>")


@pytest.fixture(scope="module")
def contract() -> dict[str, Any]:
    return current_document()


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    found: Any = document
    for part in ref.removeprefix("#/").split("/"):
        found = found[part]
    return dict(found)


def test_the_shipped_document_is_current(contract: dict[str, Any]) -> None:
    assert SHIPPED.read_text(encoding="utf-8") == render(contract), (
        "docs/openapi.json is stale: run `make openapi` and commit the result")


def test_it_is_a_valid_openapi_3_1_document(contract: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.1\.\d+", contract["openapi"]) and contract["openapi"] == OPENAPI
    schemathesis.openapi.from_dict(json.loads(json.dumps(contract))).validate()  # the OAS 3.1 meta-schema
    operation_ids = [op["operationId"] for item in contract["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_every_route_and_its_permission_is_in_the_document(flask_app: Any, contract: dict[str, Any]) -> None:
    rows = [row for row in route_table(flask_app) if documented(row.rule)]
    assert any(row.rule.startswith("/api/v1/") for row in rows)
    wanted = {}
    for row in rows:
        path = ARGUMENT.sub(r"{\1}", row.rule)
        for method in row.methods:
            wanted[(path, method.lower())] = row.permission
    published = {(path, method): op["x-vigatra-permission"] for path, item in contract["paths"].items()
                 for method, op in item.items()}
    assert published == wanted
    for (path, method), permission in wanted.items():
        operation = contract["paths"][path][method]
        assert (operation["security"] == []) == (permission == PUBLIC), (path, method)
        params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert params == set(re.findall(r"{(\w+)}", path)), (path, method)


def test_every_declared_schema_is_the_published_one(flask_app: Any, contract: dict[str, Any]) -> None:
    """Bodies, query parameters and answers in the document are the routes' own declarations."""
    for row in route_table(flask_app):
        if not documented(row.rule):
            continue
        spec = schema_of(flask_app.view_functions[row.endpoint])
        assert spec is not None, row.rule
        path = ARGUMENT.sub(r"{\1}", row.rule)
        for method in row.methods:
            operation = contract["paths"][path][method.lower()]
            body = operation.get("requestBody", {}).get("content", {})
            if spec.body is not None:
                published = _resolve(contract, body["application/json"]["schema"])
                assert published["title"] == spec.body.__name__
                assert set(published.get("properties", {})) == {
                    field.alias or name for name, field in spec.body.model_fields.items()}
                assert published.get("additionalProperties") is False
            elif spec.raw_body is not None:
                assert set(body) == {spec.raw_body}
            else:
                assert not body, (method, path)
            query = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}
            declared = spec.query.model_fields if spec.query is not None else {}
            assert set(query) == {field.alias or name for name, field in declared.items()}, (method, path)
            ok = operation["responses"][str(spec.status)]["content"]
            assert set(ok) == set(spec.media)
            if spec.returns is not None:
                assert _resolve(contract, ok["application/json"]["schema"])["title"] == spec.returns.__name__
            assert "default" in operation["responses"]


def test_the_document_is_served_to_any_signed_in_caller(client: Any, ta: Any, contract: dict[str, Any]) -> None:
    assert client.get("/api/v1/openapi.json").status_code == 401
    for name in ("alice", "nora"):  # nora holds no role at all
        response = client.get("/api/v1/openapi.json", headers=auth(token(client, ta, name)))
        assert response.status_code == 200
        assert response.get_json() == json.loads(json.dumps(contract))
    key = api_key(client, ta, owner="carol", name="integration")
    assert client.get("/api/v1/openapi.json", headers={"X-API-Key": key}).status_code == 200


def test_error_answers_are_the_published_shape(client: Any, ta: Any, contract: dict[str, Any]) -> None:
    import jsonschema_rs

    error_schema = {**contract["components"]["schemas"]["ErrorAnswer"],
                    "$defs": contract["components"]["schemas"]}
    error_schema = json.loads(json.dumps(error_schema).replace("#/components/schemas/", "#/$defs/"))
    validator = jsonschema_rs.Draft202012Validator(error_schema)
    headers = auth(token(client, ta, "alice"))
    answers = [
        client.post("/api/v1/employees", json={"name": {"first": "A"}, "bogus": 1}, headers=headers),
        client.get("/api/v1/employees/1", headers=headers),
        client.get("/api/v1/users"),
        client.get("/api/v1/users", headers=auth(token(client, ta, "nora"))),
        client.delete("/api/v1/employees", headers=headers),
    ]
    assert [a.status_code for a in answers] == [400, 404, 401, 403, 405]
    for answer in answers:
        validator.validate(answer.get_json())
