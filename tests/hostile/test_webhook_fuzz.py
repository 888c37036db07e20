"""Hypothesis-driven fuzzing of every webhook verifier and parser (``adapters/signing.py``,
each adapter's ``verify_webhook`` and ``parse_webhook``, and so each ``wire.py`` shape):
random and mutated payloads, correctly signed or with mangled signature headers, wrong
types, huge and deep values, invalid UTF-8. The promise: nothing but the documented
``WebhookError`` family ever escapes, and a delivery that is read can be read again from
the headers the gateway stores (the inbox parses stored deliveries again).

Through the HTTP route (``test_the_route_never_fails_and_stores_nothing_it_refused``, a
real ``syncgate serve``): never a 5xx, and no refused delivery is ever stored.

Examples are bounded (``max_examples``) so the suite stays fast; no example database is
written (``database=None``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.base import Adapter
from app.errors import WebhookError
from app.inbox import kept_headers
from app.model import WebhookEvent, utcnow
from tests.blackbox import ADMIN_KEY, GatewayProcess, free_port, write_config
from tests.contract.kits import KITS
from tests.hostile.support import NOWHERE, SAMPLES, SYSTEMS, adapter, nested_json, signed

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Every adapter under each webhook option that changes how it verifies or reads.
VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "hookstream": ("hookstream", {}, "default"),
    "hookstream-timestamp-required": ("hookstream", {"require_timestamp": True}, "default"),
    "devhelm": ("devhelm", {}, "default"),
    "inboxops": ("inboxops", {}, "default"),
    "inboxops-hmac": ("inboxops", {"webhook_scheme": "hmac-sha256"}, "hmac-sha256"),
    "incidentio": ("incidentio", {}, "default"),
}
_CLIENT = httpx.AsyncClient()
ADAPTERS: dict[str, Adapter] = {
    name: adapter(system, _CLIENT, **options) for name, (system, options, _) in VARIANTS.items()
}

# -- strategies ------------------------------------------------------------------------------

HUGE = st.sampled_from(["x" * 200_000, "é" * 50_000, 10**400, -(10**400), 1e308, 2**64])
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | HUGE
)
JSON_VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=25,
)
#: Header values as HTTP delivers them: latin-1 text.
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=200)
NUMBER_TEXT = st.one_of(
    st.integers().map(str),
    st.integers(min_value=1, max_value=5000).map(lambda n: "9" * n),
    st.sampled_from(
        [
            "",
            " ",
            "-1",
            "1e9",
            "0x10",
            "1.5",
            "NaN",
            "\u0661\u0662\u0663",
            "\uff11\uff12",
            "+1",
            "1_0",
        ]
    ),
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a member or element of ``value``."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = replaced(value[head], tuple(rest), new)  # type: ignore[index]
    return copy


def removed(value: Any, path: tuple[Any, ...]) -> Any:
    if len(path) == 1:
        copy = dict(value) if isinstance(value, dict) else list(value)
        del copy[path[0]]  # type: ignore[arg-type]
        return copy
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = removed(value[head], tuple(rest))  # type: ignore[index]
    return copy


@st.composite
def bodies(draw: st.DrawFn, system: str) -> bytes:
    """A body: the vendor's sample mutated (a member replaced by any JSON value, removed,
    or one added), random JSON, deep JSON, random bytes, or invalid UTF-8 spliced in."""
    sample = SAMPLES[system]
    kind = draw(st.sampled_from(["replace", "remove", "add", "random", "deep", "bytes", "utf8"]))
    if kind == "replace":
        path = draw(st.sampled_from(list(paths(sample))))
        return json.dumps(replaced(sample, path, draw(JSON_VALUES))).encode()
    if kind == "remove":
        path = draw(st.sampled_from([p for p in paths(sample) if p]))
        return json.dumps(removed(sample, path)).encode()
    if kind == "add":
        return json.dumps({**sample, draw(st.text(max_size=30)): draw(JSON_VALUES)}).encode()
    if kind == "random":
        return json.dumps(draw(JSON_VALUES)).encode()
    if kind == "deep":
        depth = draw(st.sampled_from([63, 64, 65, 200, 1000, 5000]))
        return json.dumps(sample).encode()[:-1] + b', "deep": ' + nested_json(depth) + b"}"
    if kind == "bytes":
        return draw(st.binary(max_size=400))
    text = json.dumps(sample).encode()
    at = draw(st.integers(min_value=0, max_value=len(text)))
    junk = draw(
        st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\xf4\x90\x80\x80"])
    )
    return text[:at] + junk + text[at:]


@st.composite
def deliveries(draw: st.DrawFn, variant: str) -> tuple[dict[str, str], bytes]:
    """Lower-case headers and a body: correctly signed, or with headers mangled."""
    system, _, scheme = VARIANTS[variant]
    body = draw(bodies(system))
    skew = draw(st.sampled_from([0, 0, 0, -4000, 4000]))
    headers = {
        k.lower(): v
        for k, v in signed(
            system,
            body,
            now=utcnow() + timedelta(seconds=skew),
            scheme=scheme,
            msg_id=draw(st.sampled_from([None, "", " ", "x" * 5000, "msg_é"])),
        ).items()
    }
    for name in draw(st.lists(st.sampled_from(sorted(headers)), max_size=3, unique=True)):
        mangle = draw(st.sampled_from(["drop", "random", "number", "flip", "repeat"]))
        if mangle == "drop":
            del headers[name]
        elif mangle == "random":
            headers[name] = draw(HEADER_TEXT)
        elif mangle == "number":
            headers[name] = draw(NUMBER_TEXT)
        elif mangle == "flip" and headers[name]:
            at = draw(st.integers(min_value=0, max_value=len(headers[name]) - 1))
            char = draw(st.characters(min_codepoint=0x20, max_codepoint=0xFF))
            headers[name] = headers[name][:at] + char + headers[name][at + 1 :]
        else:
            headers[name] = " ".join([headers[name]] * draw(st.integers(2, 50)))
    return headers, body


# -- in process ------------------------------------------------------------------------------


def read(variant: str, headers: dict[str, str], body: bytes) -> WebhookEvent | WebhookError:
    """What the receiver does: verify, then parse. Any other exception fails the test."""
    adapter = ADAPTERS[variant]
    outcome: WebhookEvent | WebhookError
    try:
        adapter.verify_webhook(headers, body, utcnow())
        outcome = adapter.parse_webhook(headers, body)
    except WebhookError as exc:
        outcome = exc
    if isinstance(outcome, WebhookError):
        assert outcome.http_status in (400, 401, 422)
        assert outcome.reason
    return outcome


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@FUZZ
@given(data=st.data())
def test_signed_and_mangled_deliveries_raise_only_webhook_errors(
    variant: str, data: st.DataObject
) -> None:
    headers, body = data.draw(deliveries(variant))
    outcome = read(variant, headers, body)
    if isinstance(outcome, WebhookEvent):
        assert isinstance(outcome.delivery_id, str) and outcome.delivery_id
        # the inbox reads it again from what was stored: the allow-listed headers
        stored = kept_headers(headers, ADAPTERS[variant].stored_headers)
        again = ADAPTERS[variant].parse_webhook(stored, body)
        assert again.delivery_id == outcome.delivery_id
        assert again == outcome


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@FUZZ
@given(
    headers=st.dictionaries(
        st.sampled_from(
            [
                "webhook-id",
                "webhook-timestamp",
                "webhook-signature",
                "x-devhelm-signature",
                "x-devhelm-delivery",
                "x-hookstream-signature",
                "x-hookstream-timestamp",
                "x-inboxops-signature",
            ]
        ),
        HEADER_TEXT | NUMBER_TEXT,
    ),
    body=st.binary(max_size=300),
)
def test_random_headers_and_bytes_raise_only_webhook_errors(
    variant: str, headers: dict[str, str], body: bytes
) -> None:
    outcome = read(variant, headers, body)
    assert isinstance(outcome, WebhookError)  # nothing unsigned is ever read


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@FUZZ
@given(data=st.data())
def test_parsing_alone_raises_only_webhook_errors(variant: str, data: st.DataObject) -> None:
    """``parse_webhook`` on its own (the inbox's second read), with any body."""
    system = VARIANTS[variant][0]
    body = data.draw(bodies(system))
    headers = {k.lower(): v for k, v in signed(system, body).items()}
    status = 0
    try:
        ADAPTERS[variant].parse_webhook(headers, body)
    except WebhookError as exc:
        status = exc.http_status
    assert status in (0, 400, 422)


@pytest.mark.parametrize(
    ("variant", "header", "value"),
    [
        # found by the fuzzing above: an overflow, and compare_digest refusing non-ASCII
        ("hookstream", "x-hookstream-timestamp", "9" * 309),
        ("devhelm", "x-devhelm-signature", "t=" + "9" * 309 + ";v1=00"),
        ("incidentio", "webhook-timestamp", "\u0661\u0662\u0663"),
        ("hookstream", "x-hookstream-signature", "sha256=\x80" + "0" * 63),
        ("devhelm", "x-devhelm-signature", "t={ts};v1=\xe9" + "0" * 63),
        ("inboxops-hmac", "x-inboxops-signature", "sha256=\xff" + "0" * 63),
    ],
)
def test_found_by_fuzzing_bad_timestamps_and_non_ascii_signatures_are_401(
    variant: str, header: str, value: str
) -> None:
    system, _, scheme = VARIANTS[variant]
    body = json.dumps(SAMPLES[system]).encode()
    headers = {k.lower(): v for k, v in signed(system, body, scheme=scheme).items()}
    headers[header] = value.format(ts=int(utcnow().timestamp()))
    outcome = read(variant, headers, body)
    assert isinstance(outcome, WebhookError)
    assert outcome.http_status == 401


# -- through the HTTP route ------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp_path: Path = tmp_path_factory.mktemp("fuzz")
    config = tmp_path / "config.yaml"
    write_config(
        config, f"sqlite:///{tmp_path / 'gw.db'}", dict.fromkeys(SYSTEMS, NOWHERE), create_rules=[]
    )
    process = GatewayProcess(config, free_port(), "fuzz", tmp_path / "gateway.log")
    try:
        asyncio.run(process.ready())
        yield process
    finally:
        asyncio.run(process.stop())


@pytest.mark.slow
def test_the_route_never_fails_and_stores_nothing_it_refused(served: GatewayProcess) -> None:
    accepted: set[tuple[str, str]] = set()
    with httpx.Client(base_url=served.url, timeout=30) as client:

        @settings(FUZZ, max_examples=300)
        @given(
            variant=st.sampled_from(["devhelm", "hookstream", "inboxops", "incidentio"]),
            data=st.data(),
        )
        def deliver(variant: str, data: st.DataObject) -> None:
            headers, body = data.draw(deliveries(variant))
            system = VARIANTS[variant][0]
            # only what an HTTP client can send: no surrounding blanks, no DEL
            sendable = {k: v.strip(" \t").replace("\x7f", "").encode() for k, v in headers.items()}
            response = client.post(f"/webhooks/{system}", content=body, headers=sendable)
            assert response.status_code < 500, (response.status_code, response.text)
            if response.status_code == 202:
                accepted.add((system, response.json()["delivery_id"]))
            else:
                assert response.status_code in (400, 401, 413, 422, 431), response.text
                assert response.headers["content-type"] == "application/problem+json"

        deliver()
        events = client.get(
            "/admin/events",
            params={"source": "webhook", "limit": 500},
            headers={"X-Admin-Key": ADMIN_KEY},
        )
    assert events.status_code == 200
    stored = {(e["system"], e["delivery_id"]) for e in events.json()["events"]}
    assert accepted  # the mutations left some deliveries readable
    assert stored == accepted  # each acknowledged one stored, no refused one
    assert KITS["inboxops"].webhook_secret not in events.text
