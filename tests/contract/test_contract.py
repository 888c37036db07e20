"""The adapter contract, run for every vendor against its strict simulator over real HTTP.

Vendor-specific knowledge comes from ``kit_<vendor>.py`` (see ``kit.py``); this file knows
only the ``Adapter`` interface and the common ``/_sim/`` control surface.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import msgspec
import pytest

from adapters import simulator_class
from adapters._simkit import SVIX_SCHEDULE, Behaviour
from adapters.base import fit, lower_headers
from app.errors import (
    AuthError,
    NotFound,
    RateLimited,
    Rejected,
    SignatureInvalid,
    TransientError,
)
from app.model import CreateTarget, Fields, ObjectRef, utcnow
from app.serving import bind_socket, serve_asgi
from tests.contract.kits import KITS
from tests.vendor_rig import VendorRig, serve_vendor


def behaviours(system: str) -> list[tuple[str, dict[str, Any]]]:
    """Every documented reading the vendor's simulator can play: its defaults, then each
    other choice of each behaviour option, one at a time (``BEHAVIOURS`` in the
    simulator's module)."""
    module = sys.modules[simulator_class(system).__module__]
    spec: dict[str, Behaviour] = getattr(module, "BEHAVIOURS", {})
    out: list[tuple[str, dict[str, Any]]] = [("default", {})]
    for name, behaviour in sorted(spec.items()):
        out.extend((f"{name}={choice}", {name: choice}) for choice in behaviour.choices[1:])
    return out


def _params(keep: Any = None) -> list[Any]:
    return [
        pytest.param((s, b), id=f"{s}-{vid}")
        for s in sorted(KITS)
        for vid, b in behaviours(s)
        if keep is None or keep(s, b)
    ]


@pytest.fixture(params=_params())
def variant(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    system, behaviour = request.param
    return str(system), dict(behaviour)


async def _rig(system: str, behaviour: dict[str, Any]) -> AsyncIterator[VendorRig]:
    # a short client timeout, so that a vendor that never answers is a quick test
    async with serve_vendor(system, behaviour, client_timeout=1.0) as rig:
        yield rig


@pytest.fixture
async def rig(variant: tuple[str, dict[str, Any]]) -> AsyncIterator[VendorRig]:
    async for r in _rig(*variant):
        yield r


@pytest.fixture(params=_params(lambda s, b: KITS[s].create_target is not None))
async def creatable(request: pytest.FixtureRequest) -> AsyncIterator[VendorRig]:
    async for r in _rig(*request.param):
        yield r


@pytest.fixture(params=_params(lambda s, b: KITS[s].create_target is None))
async def not_creatable(request: pytest.FixtureRequest) -> AsyncIterator[VendorRig]:
    async for r in _rig(*request.param):
        yield r


@pytest.fixture(params=_params(lambda s, b: KITS[s].timestamped_under(b)))
async def timestamped(request: pytest.FixtureRequest) -> AsyncIterator[VendorRig]:
    async for r in _rig(*request.param):
        yield r


# -- reads and writes ------------------------------------------------------------------------


async def test_get_returns_the_seeded_object(rig: VendorRig) -> None:
    ref = await rig.kit.seed(rig.control)
    obj = await rig.adapter.get(ref)
    assert obj.ref.external_id == ref.external_id
    assert obj.ref.system == rig.kit.system
    assert obj.updated_at.tzinfo is not None
    assert obj.fields.status is not None


async def test_update_round_trip(rig: VendorRig) -> None:
    ref = await rig.kit.seed(rig.control)
    before = await rig.adapter.get(ref)
    changes = rig.kit.update_fields
    assert not rig.adapter.differs(before, changes).is_empty(), "kit update must be a change"
    after = await rig.adapter.update(ref, changes, current=before)
    assert rig.adapter.differs(after, changes).is_empty()
    fetched = await rig.adapter.get(ref)
    assert rig.adapter.differs(fetched, changes).is_empty()
    assert fetched.updated_at >= before.updated_at


async def test_update_is_safe_to_repeat(rig: VendorRig) -> None:
    ref = await rig.kit.seed(rig.control)
    current = await rig.adapter.get(ref)
    first = await rig.adapter.update(ref, rig.kit.update_fields, current=current)
    second = await rig.adapter.update(ref, rig.kit.update_fields, current=first)
    assert first.fields == second.fields


async def test_create_get_update_round_trip(creatable: VendorRig) -> None:
    kit, adapter = creatable.kit, creatable.adapter
    assert kit.create_target is not None
    created = await adapter.create(kit.create_target, kit.create_fields, "wi-1:link-1")
    assert adapter.differs(created, kit.create_fields.only(adapter.writable)).is_empty()
    fetched = await adapter.get(created.ref)
    assert fetched.ref == created.ref
    assert adapter.differs(fetched, kit.create_fields.only(adapter.writable)).is_empty()
    updated = await adapter.update(created.ref, kit.update_fields, current=fetched)
    assert adapter.differs(updated, kit.update_fields).is_empty()


async def test_a_title_longer_than_the_vendor_holds_is_written_and_held(
    creatable: VendorRig,
) -> None:
    """DevHelm holds a title of 500 "chars" (under behaviour ``length=utf16`` UTF-16
    units, an emoji two); the other vendors document no limit. A longer title is written
    cut to fit where there is a limit, never refused, and the object holds it in
    meaning: its link is not dirty again."""
    kit, adapter = creatable.kit, creatable.adapter
    assert kit.create_target is not None
    first = "Refunds failing " + "\U0001f642" * 300 + " for EU customers"
    fields = msgspec.structs.replace(kit.create_fields, title=first)
    created = await adapter.create(kit.create_target, fields, "wi-2:link-3")
    assert adapter.differs(created, Fields(title=first)).is_empty()
    second = "Payments failing " + "\u00e9" * 600
    updated = await adapter.update(created.ref, Fields(title=second), current=created)
    assert adapter.differs(updated, Fields(title=second)).is_empty()
    fetched = await adapter.get(created.ref)
    assert adapter.differs(fetched, Fields(title=second)).is_empty()
    limit = adapter.max_lengths.get("title")
    assert fetched.fields.title == (second if limit is None else fit(second, limit))


async def test_retried_create_never_duplicates(creatable: VendorRig) -> None:
    kit, adapter = creatable.kit, creatable.adapter
    assert kit.create_target is not None
    started = utcnow()
    first = await adapter.create(kit.create_target, kit.create_fields, "wi-7:link-9")
    again = await adapter.create(
        kit.create_target, kit.create_fields, "wi-7:link-9", earlier_since=started
    )
    assert again.ref == first.ref
    other = await adapter.create(kit.create_target, kit.create_fields, "wi-8:link-10")
    assert other.ref != first.ref
    objects = [o async for page in adapter.list_changed(None) for o in page]
    ids = [o.ref.external_id for o in objects]
    assert ids.count(first.ref.external_id) == 1
    assert len(set(ids)) == 2


async def test_create_after_a_lost_response_never_duplicates(creatable: VendorRig) -> None:
    """The first create reaches the vendor but its answer is lost (timeout): the retry
    must find or replay it, not make a second object."""
    kit, adapter = creatable.kit, creatable.adapter
    assert kit.create_target is not None
    await creatable.fault(status=502, count=1, methods=["POST"], after=True)
    started = utcnow()
    with pytest.raises(TransientError):
        await adapter.create(kit.create_target, kit.create_fields, "wi-3:link-3")
    created = await adapter.create(
        kit.create_target, kit.create_fields, "wi-3:link-3", earlier_since=started
    )
    again = await adapter.create(
        kit.create_target, kit.create_fields, "wi-3:link-3", earlier_since=started
    )
    assert again.ref == created.ref
    objects = [o async for page in adapter.list_changed(None) for o in page]
    assert [o.ref for o in objects].count(created.ref) == 1


async def test_create_is_rejected_where_the_vendor_cannot_create(not_creatable: VendorRig) -> None:
    adapter = not_creatable.adapter
    assert not adapter.can_create
    with pytest.raises(Rejected):
        await adapter.create(CreateTarget(), not_creatable.kit.update_fields, "k")


async def test_list_changed_walks_every_page(rig: VendorRig) -> None:
    refs = [await rig.kit.seed(rig.control, n) for n in range(5)]
    pages = [page async for page in rig.adapter.list_changed(None)]
    seen = [o.ref.external_id for page in pages for o in page]
    assert {r.external_id for r in refs} <= set(seen)
    assert len(seen) == len(set(seen)), "an object listed twice in one walk"
    assert len(pages) >= 3, "page_size=2 over 5 objects must take several pages"


async def test_list_changed_since_returns_only_later_changes(rig: VendorRig) -> None:
    refs = [await rig.kit.seed(rig.control, n) for n in range(4)]
    cutoff = (await rig.adapter.get(refs[-1])).updated_at + timedelta(microseconds=1)
    await rig.kit.human_change(rig.control, refs[0])
    changed = [o async for page in rig.adapter.list_changed(cutoff) for o in page]
    ids = {o.ref.external_id for o in changed}
    assert refs[0].external_id in ids
    assert not ids & {r.external_id for r in refs[1:]}


# -- webhooks -------------------------------------------------------------------------------


async def _delivery(rig: VendorRig) -> tuple[dict[str, str], bytes]:
    await rig.kit.trigger_webhook(rig.control)
    await rig.control.post("/_sim/webhooks/flush")
    assert rig.captured, "the simulator sent no webhook"
    request = rig.captured[-1]
    return lower_headers(request.headers.multi_items()), request.content


async def test_webhook_signature_accepted_and_parsed(rig: VendorRig) -> None:
    headers, body = await _delivery(rig)
    rig.adapter.verify_webhook(headers, body, utcnow())
    event = rig.adapter.parse_webhook(headers, body)
    assert event.delivery_id
    assert event.observations or event.hints or event.poll


async def test_webhook_signature_accepted_during_secret_rotation(rig: VendorRig) -> None:
    headers, body = await _delivery(rig)
    rotated = rig.adapter_with(webhook_secrets=(rig.kit.other_secret, rig.kit.webhook_secret))
    rotated.verify_webhook(headers, body, utcnow())


async def test_webhook_wrong_secret_rejected(rig: VendorRig) -> None:
    headers, body = await _delivery(rig)
    wrong = rig.adapter_with(webhook_secrets=(rig.kit.other_secret,))
    with pytest.raises(SignatureInvalid):
        wrong.verify_webhook(headers, body, utcnow())


async def test_webhook_tampered_body_rejected(rig: VendorRig) -> None:
    headers, body = await _delivery(rig)
    tampered = body.replace(b"}", b" }", 1)
    assert tampered != body
    with pytest.raises(SignatureInvalid):
        rig.adapter.verify_webhook(headers, tampered, utcnow())


async def test_webhook_missing_signature_header_rejected(rig: VendorRig) -> None:
    headers, body = await _delivery(rig)
    for name in rig.kit.signature_headers_under(rig.behaviour):
        stripped = {k: v for k, v in headers.items() if k != name.lower()}
        with pytest.raises(SignatureInvalid):
            rig.adapter.verify_webhook(stripped, body, utcnow())


async def test_webhook_timestamps_are_the_wall_clock_when_the_vendor_clock_runs_ahead(
    rig: VendorRig,
) -> None:
    """Advancing the simulated clock (auto-resolve, reminders) moves object times, never
    the signature timestamp: a receiver checks that against its own clock."""
    await rig.control.post("/_sim/clock", json={"advance_s": 1800})
    headers, body = await _delivery(rig)
    rig.adapter.verify_webhook(headers, body, utcnow())


async def test_a_webhook_is_retried_on_the_vendors_schedule_until_the_receiver_recovers(
    rig: VendorRig,
) -> None:
    """At least once: the receiver fails (500, down, 503) and then accepts; every attempt
    is the same message, freshly signed, after the vendor's documented delays."""
    rig.hook_answers.extend([500, httpx.ConnectError("receiver is down"), 503])
    await rig.kit.trigger_webhook(rig.control)
    await rig.control.post("/_sim/webhooks/flush")
    deliveries = (await rig.control.get("/_sim/webhooks")).json()["deliveries"]
    delivery = deliveries[-1]
    assert delivery["delivered"] and not delivery["gave_up"]
    assert delivery["attempts"] == 4
    assert delivery["delays"] == list(SVIX_SCHEDULE[1:4])  # 5 s, 5 min, 30 min
    attempts = rig.captured[-4:]
    assert len({a.content for a in attempts}) == 1, "a retry carries the same message"
    for attempt in attempts:
        headers = lower_headers(attempt.headers.multi_items())
        rig.adapter.verify_webhook(headers, attempt.content, utcnow())
    ids = {
        rig.adapter.parse_webhook(lower_headers(a.headers.multi_items()), a.content).delivery_id
        for a in attempts
    }
    assert len(ids) == 1, "the receiver can tell a retry from a new message"


async def test_a_webhook_is_given_up_when_the_schedule_runs_out(rig: VendorRig) -> None:
    rig.hook_answers.extend([500] * len(SVIX_SCHEDULE))
    await rig.kit.trigger_webhook(rig.control)
    await rig.control.post("/_sim/webhooks/flush")
    delivery = (await rig.control.get("/_sim/webhooks")).json()["deliveries"][-1]
    assert (delivery["delivered"], delivery["gave_up"]) == (False, True)
    assert delivery["attempts"] == len(SVIX_SCHEDULE) == 8
    assert sum(delivery["delays"]) == sum(SVIX_SCHEDULE)  # about 31 hours of trying


async def test_webhook_stale_timestamp_rejected(timestamped: VendorRig) -> None:
    headers, body = await _delivery(timestamped)
    timestamped.adapter.verify_webhook(headers, body, utcnow() + timedelta(seconds=200))
    with pytest.raises(SignatureInvalid):
        timestamped.adapter.verify_webhook(headers, body, utcnow() + timedelta(minutes=10))


# -- error families -------------------------------------------------------------------------


async def test_unknown_object_is_not_found(rig: VendorRig) -> None:
    ref = await rig.kit.seed(rig.control)
    missing = ObjectRef(ref.system, ref.scope, ref.external_id[:-4] + "0000")
    with pytest.raises(NotFound):
        await rig.adapter.get(missing)


async def test_wrong_api_key_is_auth_error(rig: VendorRig) -> None:
    ref = await rig.kit.seed(rig.control)
    bad = rig.adapter_with(api_key=rig.kit.api_key + "x")
    with pytest.raises(AuthError):
        await bad.get(ref)


async def test_rate_limit_headers_come_on_every_authenticated_response(rig: VendorRig) -> None:
    ref = await rig.kit.seed(rig.control)
    missing = ObjectRef(ref.system, ref.scope, ref.external_id[:-4] + "0000")
    responses = []

    async def record(response: httpx.Response) -> None:
        responses.append(response)

    rig.adapter.client.event_hooks["response"].append(record)
    try:
        await rig.adapter.get(ref)
        with pytest.raises(NotFound):
            await rig.adapter.get(missing)
        with pytest.raises(AuthError):
            await rig.adapter_with(api_key=rig.kit.api_key + "x").get(ref)
    finally:
        rig.adapter.client.event_hooks["response"].remove(record)
    # (a read may take more than one call: hookstream's guide-shaped detail is followed
    # by a list call for its change time)
    *authenticated, unauthenticated = responses
    assert [r.status_code for r in authenticated][-1] == 404
    for response in authenticated:
        sent = {h for h in response.headers if h.startswith(("ratelimit-", "x-ratelimit-"))}
        # exactly the documented ones (InboxOps documents none, so sends none)
        assert sent == set(rig.kit.rate_limit_headers), response.headers
    assert not set(rig.kit.rate_limit_headers) & set(unauthenticated.headers)


async def test_injected_429_is_rate_limited_with_retry_after(rig: VendorRig) -> None:
    """The delay is ``Retry-After``'s; where the vendor may send none (hookstream,
    behaviour ``retry_after: absent``), its rate-limit reset header's."""
    ref = await rig.kit.seed(rig.control)
    await rig.fault(status=429, retry_after=7)
    answers: list[httpx.Response] = []

    async def record(response: httpx.Response) -> None:
        answers.append(response)

    rig.adapter.client.event_hooks["response"].append(record)
    try:
        with pytest.raises(RateLimited) as info:
            await rig.adapter.get(ref)
    finally:
        rig.adapter.client.event_hooks["response"].remove(record)
    if rig.kit.retry_after_under(rig.behaviour):
        assert info.value.retry_after == pytest.approx(7)
    else:
        assert "retry-after" not in answers[-1].headers
        reset = float(answers[-1].headers["ratelimit-reset"])
        assert 0 < info.value.retry_after == pytest.approx(reset)
    assert (await rig.adapter.get(ref)).ref.external_id == ref.external_id


async def test_requests_per_minute_limit_gives_rate_limited(rig: VendorRig) -> None:
    ref = await rig.kit.seed(rig.control)
    await rig.control.delete("/_sim/requests")
    await rig.adapter.get(ref)  # how many calls one read takes (hookstream's guide: two)
    calls = len((await rig.control.get("/_sim/requests")).json()["requests"])
    await rig.control.put("/_sim/rate-limit", json={"rpm": 3 * calls})
    for _ in range(3):
        await rig.adapter.get(ref)
    with pytest.raises(RateLimited) as info:
        await rig.adapter.get(ref)
    assert 0 < info.value.retry_after <= 60


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_transient(rig: VendorRig, status: int) -> None:
    ref = await rig.kit.seed(rig.control)
    await rig.fault(status=status)
    with pytest.raises(TransientError):
        await rig.adapter.get(ref)


async def test_timeout_is_transient(rig: VendorRig) -> None:
    ref = await rig.kit.seed(rig.control)
    await rig.fault(timeout_s=3.0)
    with pytest.raises(TransientError):
        await rig.adapter.get(ref)


async def test_connection_error_is_transient(rig: VendorRig) -> None:
    sock = bind_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there any more
    dead = rig.adapter_with(base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError):
        await dead.get(ObjectRef(rig.kit.system, "", "x" * 8))


@pytest.mark.parametrize("status", [400, 422])
async def test_validation_status_is_rejected_with_vendor_message(
    rig: VendorRig, status: int
) -> None:
    ref = await rig.kit.seed(rig.control)
    current = await rig.adapter.get(ref)
    await rig.fault(status=status, methods=["PUT", "PATCH"])
    with pytest.raises(Rejected) as info:
        await rig.adapter.update(ref, rig.kit.update_fields, current=current)
    assert "injected" in info.value.message


@pytest.mark.parametrize("system", sorted(KITS))
async def test_behaviour_options_are_listed_and_unknown_ones_refused(system: str) -> None:
    kit = KITS[system]
    with pytest.raises(ValueError, match="no behaviour"):
        kit.simulator(options=kit.sim_options(behaviour={"telepathy": True}))
    sim = kit.simulator(options=kit.sim_options())
    async with serve_asgi(sim.app) as url, httpx.AsyncClient(base_url=url) as control:
        listed = (await control.get("/_sim/behaviour")).json()
        assert set(listed["behaviour"]) == {
            vid.split("=")[0] for vid, _ in behaviours(system)[1:]
        } | ({"org_id"} if system == "devhelm" else set())
        refused = await control.put("/_sim/behaviour", json={"telepathy": True})
        assert refused.status_code == 400
        assert (await control.get("/_sim/behaviour")).json() == listed
