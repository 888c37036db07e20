"""The common ``/_sim/`` control surface every simulator serves (no auth; a local test
surface), over its ``SimKit``:

    GET    /_sim/requests            the request log (vendor routes only)
    DELETE /_sim/requests            clear it
    POST   /_sim/faults              {"status": 500, "count": 1, "chance": 1.0,
                                      "retry_after": null, "timeout_s": null,
                                      "methods": null, "path_prefix": null, "after": false}
    DELETE /_sim/faults              drop pending faults
    PUT    /_sim/latency             {"ms": 20}
    PUT    /_sim/rate-limit          {"rpm": 100}   (null: unlimited)
    POST   /_sim/clock               {"advance_s": 1800}: move the vendor clock, run timers
    PUT    /_sim/webhook             {"url": "...", "secret": "..."}  (null url: stop sending)
    GET    /_sim/webhooks            the delivery log
    POST   /_sim/webhooks/flush      wait until every pending delivery has finished
    GET    /_sim/behaviour           {"behaviour": {name: value}, "choices": {name: [...]}}
    PUT    /_sim/behaviour           {name: value, ...}: play another documented reading

``GET /_sim/objects`` is the ``Simulator`` base's (``adapters/_simbase.py``); each
simulator adds its own control routes, listed in its module docstring.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, delete, get, post, put
from litestar.exceptions import ValidationException

from adapters._simgate import Fault
from adapters._simkit import SimKit


class LatencyBody(msgspec.Struct, forbid_unknown_fields=True):
    ms: float


class RateLimitBody(msgspec.Struct, forbid_unknown_fields=True):
    rpm: int | None


class ClockBody(msgspec.Struct, forbid_unknown_fields=True):
    advance_s: float
    #: A negative advance steps the clock back (times go backwards once), as a vendor
    #: host whose clock is corrected does; by default the clock stands still instead.
    step_back: bool = False


class WebhookTarget(msgspec.Struct, forbid_unknown_fields=True):
    url: str | None
    secret: str | None = None


def control_handlers(kit: SimKit) -> list[Any]:
    """The route handlers of the common control surface, over ``kit``."""

    def decode(request_body: bytes, type_: type[Any]) -> Any:
        try:
            return msgspec.json.decode(request_body or b"{}", type=type_)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            # a 400 in the vendor's error shape (build_app renders it), not a 500
            raise ValidationException(detail=f"control body: {exc}") from None

    @get("/_sim/requests", sync_to_thread=False)
    def list_requests() -> dict[str, Any]:
        return {"requests": msgspec.to_builtins(kit.requests)}

    @delete("/_sim/requests", status_code=204, sync_to_thread=False)
    def clear_requests() -> None:
        kit.requests.clear()

    @post("/_sim/faults", status_code=201)
    async def add_fault(request: Request[Any, Any, Any]) -> dict[str, Any]:
        fault = decode(await request.body(), Fault)
        kit.faults.append(fault)
        return {"pending": len(kit.faults)}

    @delete("/_sim/faults", status_code=204, sync_to_thread=False)
    def clear_faults() -> None:
        kit.faults.clear()

    @put("/_sim/latency")
    async def set_latency(request: Request[Any, Any, Any]) -> dict[str, Any]:
        kit.latency_ms = decode(await request.body(), LatencyBody).ms
        return {"ms": kit.latency_ms}

    @put("/_sim/rate-limit")
    async def set_rate_limit(request: Request[Any, Any, Any]) -> dict[str, Any]:
        kit.limit_rate(decode(await request.body(), RateLimitBody).rpm)
        return {"rpm": kit.rpm}

    @post("/_sim/clock")
    async def advance_clock(request: Request[Any, Any, Any]) -> dict[str, Any]:
        body = decode(await request.body(), ClockBody)
        kit.advance(body.advance_s, step_back=body.step_back)
        return {"now": kit.now().isoformat()}

    @put("/_sim/webhook")
    async def set_webhook(request: Request[Any, Any, Any]) -> dict[str, Any]:
        target = decode(await request.body(), WebhookTarget)
        kit.webhook_url = target.url
        if target.secret is not None:
            kit.webhook_secret = target.secret
        return {"url": kit.webhook_url}

    @get("/_sim/webhooks", sync_to_thread=False)
    def list_deliveries() -> dict[str, Any]:
        return {"deliveries": msgspec.to_builtins(kit.deliveries)}

    @post("/_sim/webhooks/flush")
    async def flush_deliveries() -> dict[str, Any]:
        await kit.flush()
        return {"deliveries": len(kit.deliveries)}

    def behaviour_view() -> dict[str, Any]:
        return {
            "behaviour": dict(kit.behaviour),
            "choices": {name: list(b.choices) for name, b in kit.behaviours.items()},
        }

    @get("/_sim/behaviour", sync_to_thread=False)
    def get_behaviour() -> dict[str, Any]:
        return behaviour_view()

    @put("/_sim/behaviour")
    async def set_behaviour(request: Request[Any, Any, Any]) -> Any:
        try:
            kit.set_behaviour(decode(await request.body(), dict[str, Any]))
        except (ValueError, msgspec.ValidationError) as exc:
            return kit.error(400, "validation_error", str(exc))
        return behaviour_view()

    return [
        list_requests,
        clear_requests,
        add_fault,
        clear_faults,
        set_latency,
        set_rate_limit,
        advance_clock,
        set_webhook,
        list_deliveries,
        flush_deliveries,
        get_behaviour,
        set_behaviour,
    ]
