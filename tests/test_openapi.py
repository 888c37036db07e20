"""The OpenAPI document and its pages, against a served gateway: every admin and webhook
route documents its fields, examples and the statuses it answers (problems as
problem+json, never litestar's default error shape), and Swagger UI and Redoc load only
the gateway's own assets."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest

from app.store import Store
from tests.admin_support import PROBLEM, admin, ok

pytestmark = pytest.mark.parametrize("db_kind", ["sqlite"])

DOC_PAGES = ["/schema", "/schema/swagger", "/schema/redoc"]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        del tag
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _is_struct(doc: dict[str, Any], schema: dict[str, Any]) -> bool:
    """A property that is another documented body (or a list of them): its own fields
    carry the examples."""
    if schema.get("type") == "array":
        schema = schema["items"]
    if len(schema.get("allOf", ())) == 1:
        schema = schema["allOf"][0]
    return "$ref" in schema and "properties" in _resolve(doc, schema)


async def _document(store: Store) -> dict[str, Any]:
    async with admin(store) as (_, client):
        return ok(await client.get("/schema/openapi.json"))  # type: ignore[no-any-return]


async def test_every_admin_and_webhook_route_documents_what_it_answers(store: Store) -> None:
    doc = await _document(store)
    operations = [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        if path.startswith(("/admin", "/webhooks"))
        for method, op in item.items()
    ]
    assert len(operations) >= 22
    for method, path, op in operations:
        where = f"{method} {path}"
        responses = op["responses"]
        assert op["summary"], where
        if path.startswith("/admin"):
            assert "401" in responses, where
        assert "401" in responses or path.startswith("/admin"), where
        if op.get("parameters") or op.get("requestBody"):
            assert "400" in responses, where  # litestar validates them: as a problem
        for code, response in responses.items():
            content = response.get("content") or {}
            if int(code) >= 400:
                assert list(content) == [PROBLEM], (where, code, content)
                schema = content[PROBLEM]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, (where, code)
                assert content[PROBLEM]["examples"], (where, code)
            else:
                for media in content.values():
                    assert "status_code" not in _resolve(doc, media["schema"]).get(
                        "properties", {}
                    ), (where, code)
        for parameter in op.get("parameters", []):
            assert parameter.get("description"), (where, parameter["name"])
            assert parameter.get("examples") or parameter["schema"].get("examples"), (
                where,
                parameter["name"],
            )
    # the webhook route: the raw signed JSON it reads, and what it answers
    webhook = doc["paths"]["/webhooks/{system}"]["post"]
    body = webhook["requestBody"]
    assert body["required"] and "signature" in body["description"].lower()
    assert body["content"]["application/json"]["examples"]
    assert {"202", "400", "401", "404", "413", "422"} <= set(webhook["responses"])
    ack = _resolve(doc, webhook["responses"]["202"]["content"]["application/json"]["schema"])
    assert {"status", "delivery_id", "event_id"} <= set(ack["properties"])


async def test_every_field_has_a_description_and_an_example(store: Store) -> None:
    doc = await _document(store)
    fields = 0
    for name, schema in doc["components"]["schemas"].items():
        for field, prop in schema.get("properties", {}).items():
            fields += 1
            assert prop.get("description"), f"{name}.{field} has no description"
            if not _is_struct(doc, prop):
                assert "examples" in prop, f"{name}.{field} has no example"
    assert fields >= 135  # the issue counted 135 fields with none
    # the bodies of every admin route are among them (no inline, undocumented body)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for code, response in op["responses"].items():
                for media in (response.get("content") or {}).values():
                    schema = media["schema"]
                    if schema.get("type") == "array":
                        schema = schema["items"]
                    assert "$ref" in schema or path in ("/healthz", "/readyz", "/metrics"), (
                        method,
                        path,
                        code,
                    )


async def test_docs_pages_load_only_the_gateways_own_assets(store: Store) -> None:
    async with admin(store) as (_, client):
        seen: set[str] = set()
        for page in DOC_PAGES:
            response = await client.get(page, headers={"X-Admin-Key": ""})
            assert response.status_code == 200, page
            assert response.headers["content-type"].startswith("text/html"), page
            html = response.text
            assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html, re.I), (
                page,
                re.findall(r"\S*https?://\S*", html)[:5],
            )
            links = _Links()
            links.feed(html)
            assert links.urls, page
            for url in links.urls:
                assert url.startswith("/schema/assets/"), (page, url)
            seen.update(links.urls)
        assert any(u.endswith("swagger-ui-bundle.js") for u in seen)
        assert any(u.endswith("redoc.standalone.js") for u in seen)
        kinds = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
        for url in sorted(seen):
            asset = await client.get(url, headers={"X-Admin-Key": ""})
            assert asset.status_code == 200, url
            assert len(asset.content) > 100, url
            expected = next(v for k, v in kinds.items() if url.endswith(k))
            assert expected in asset.headers["content-type"], (url, asset.headers)
        # nothing else is served from there
        outside = await client.get("/schema/assets/swagger-ui/%2e%2e/%2e%2e/%2e%2e/pyproject.toml")
        assert outside.status_code == 404, outside.text
