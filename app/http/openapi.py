"""The OpenAPI document and its pages: ``/schema`` (Swagger UI), ``/schema/swagger``,
``/schema/redoc``, ``/schema/openapi.json`` and ``/schema/openapi.yaml``.

Swagger UI and Redoc are served from the gateway's own assets (``/schema/assets/``, from
the ``openapi-ui-bundles`` package), never from a CDN, so the pages render on a network
that reaches nothing outside. The webhook route's request body (raw signed JSON, read by
the handler itself, not parsed by litestar) is described here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Annotated

import msgspec
from litestar import Router
from litestar._openapi.schema_generation import SchemaCreator
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    RedocRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.openapi.spec import (
    Components,
    Example,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.params import PathParameter
from litestar.plugins import OpenAPISchemaPlugin
from litestar.static_files import create_static_files_router
from litestar.typing import FieldDefinition
from msgspec import UNSET, Meta, UnsetType
from openapi_ui_bundles import redoc, swagger_ui

from app.http.problems import problem_spec

SCHEMA_PATH = "/schema"
ASSETS_PATH = f"{SCHEMA_PATH}/assets"
SWAGGER_ASSETS = f"{ASSETS_PATH}/swagger-ui"
REDOC_ASSETS = f"{ASSETS_PATH}/redoc"

_FAVICON = f"<link rel='icon' type='image/png' href='{SWAGGER_ASSETS}/favicon-32x32.png'>"


def openapi_config() -> OpenAPIConfig:
    """The document's metadata, its security schemes and the pages that render it."""
    return OpenAPIConfig(
        title="Syncgate",
        version=metadata.version("syncgate"),
        description="Webhooks in, the admin API under /admin (every route behind the admin"
        " key: X-Admin-Key or Authorization: Bearer), health and metrics. Every error is an"
        " RFC 7807 problem (application/problem+json).",
        path=SCHEMA_PATH,
        components=Components(
            security_schemes={
                "AdminKey": SecurityScheme(
                    type="apiKey",
                    name="X-Admin-Key",
                    security_scheme_in="header",
                    description="The admin key (the variable admin.api_key_env names)",
                ),
                "AdminBearer": SecurityScheme(
                    type="http", scheme="bearer", description="The admin key as a bearer token"
                ),
            }
        ),
        render_plugins=[
            SwaggerRenderPlugin(
                path=["/", "/swagger"],
                js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
                css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
                standalone_preset_js_url=f"{SWAGGER_ASSETS}/swagger-ui-standalone-preset.js",
                favicon=_FAVICON,
            ),
            RedocRenderPlugin(
                js_url=f"{REDOC_ASSETS}/redoc.standalone.js", google_fonts=False, favicon=_FAVICON
            ),
            JsonRenderPlugin(),
            YamlRenderPlugin(),
        ],
    )


class StrictBodies(OpenAPISchemaPlugin):
    """A body that refuses unknown fields (``forbid_unknown_fields``) says so in its
    schema (``additionalProperties: false``), so clients and fuzzers know. The schema is
    otherwise litestar's own for msgspec structs."""

    _structs = StructSchemaPlugin()

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return self._structs.is_plugin_supported_field(field_definition) and bool(
            field_definition.type_.__struct_config__.forbid_unknown_fields
        )

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = self._structs.to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema


def asset_routers() -> list[Router]:
    """The Swagger UI and Redoc bundles, served from the installed package."""
    return [
        create_static_files_router(
            SWAGGER_ASSETS, directories=[swagger_ui.static_path], name="swagger-ui-assets"
        ),
        create_static_files_router(
            REDOC_ASSETS, directories=[redoc.static_path], name="redoc-assets"
        ),
    ]


# -- the webhook route ------------------------------------------------------------------------

WebhookSystem = Annotated[
    str,
    PathParameter(
        description="The system the webhook comes from: hookstream, devhelm, inboxops or"
        " incidentio (as configured)",
        examples=[Example(value="inboxops")],
    ),
]


class WebhookAck(msgspec.Struct, omit_defaults=True):
    """A delivery stored (or stored already): it will be processed."""

    status: Annotated[
        str, Meta(description="accepted, or duplicate (stored before)", examples=["accepted"])
    ]
    delivery_id: Annotated[str, Meta(description="The vendor's delivery id", examples=["msg_2b1c"])]
    event_id: Annotated[
        int | UnsetType,
        Meta(description="The stored event (absent for a duplicate)", examples=[7]),
    ] = UNSET


_SIGNATURES = (
    "The body is the vendor's JSON exactly as sent, verified byte for byte against its"
    " signature before anything is read, so it must not be re-encoded on the way."
    " Signature headers per system: hookstream `X-Hookstream-Signature` and"
    " `X-Hookstream-Timestamp`; DevHelm `X-DevHelm-Signature`; InboxOps"
    " `X-InboxOps-Signature: sha256=<hex>` or, with `webhook_scheme: standard`, the"
    " Standard Webhooks headers; incident.io the Standard Webhooks headers `webhook-id`,"
    " `webhook-timestamp`, `webhook-signature`. A stale timestamp is refused like a wrong"
    " signature."
)


@dataclass
class WebhookOperation(Operation):
    """The webhook route's operation, with the request body litestar cannot infer (the
    handler reads the raw bytes itself)."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            description=_SIGNATURES,
            required=True,
            content={
                "application/json": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        description="The vendor's event, as the vendor's webhook docs define it",
                        additional_properties=True,
                    ),
                    examples={
                        "inboxops": Example(
                            summary="An InboxOps ticket update",
                            value={
                                "id": "evt_01",
                                "type": "ticket.updated",
                                "data": {"id": "T-1042", "status": "resolved"},
                            },
                        )
                    },
                )
            },
        )


WEBHOOK_RESPONSES: dict[int, ResponseSpec] = {
    202: ResponseSpec(
        data_container=WebhookAck,
        description="Stored durably (committed before this answer), or already stored",
        generate_examples=False,
        examples=[Example(value={"status": "accepted", "delivery_id": "msg_2b1c", "event_id": 7})],
    ),
    400: problem_spec(400, "Malformed payload: the body is not JSON", "Malformed payload"),
    401: problem_spec(
        401, "Invalid signature: missing, wrong or stale", "Invalid signature", "bad signature"
    ),
    404: problem_spec(404, "No enabled system of that name", "Unknown system"),
    413: problem_spec(413, "Body over server.max_body_bytes", "Payload too large"),
    422: problem_spec(422, "JSON, but not a payload this vendor sends", "Unreadable payload"),
}
