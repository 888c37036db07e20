"""Refused webhooks leave a trace a person can act on: one ``webhook rejected`` log line
per system and reason per minute, with the sender's address (the forwarded client when
a trusted proxy on loopback forwards it), how many were left out, and neither the body
nor any header or secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.blackbox import GatewayProcess, eventually
from tests.contract.kits import KITS
from tests.hostile.support import gateway, sample, signed

pytestmark = pytest.mark.slow


def rejections(gw: GatewayProcess) -> list[dict[str, Any]]:
    lines = gw.log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    return [e for e in entries if e.get("message") == "webhook rejected"]


async def test_each_rejection_is_logged_once_a_minute_with_reason_and_sender(
    tmp_path: Path,
) -> None:
    async with gateway(tmp_path) as gw, httpx.AsyncClient(base_url=gw.url) as client:
        body = sample("inboxops")
        wrong = signed("inboxops", body, secret=KITS["inboxops"].other_secret)
        for _ in range(5):  # a secret rotated on one side only
            response = await client.post("/webhooks/inboxops", content=body, headers=wrong)
            assert response.status_code == 401
        junk = b"not json at all"
        response = await client.post(
            "/webhooks/inboxops", content=junk, headers=signed("inboxops", junk)
        )
        assert response.status_code == 400
        forwarded = {**signed("devhelm", b"{}", secret="wrong"), "X-Forwarded-For": "203.0.113.9"}
        response = await client.post("/webhooks/devhelm", content=b"{}", headers=forwarded)
        assert response.status_code == 401
        response = await client.post("/webhooks/jira", content=b"{}")
        assert response.status_code == 404

        async def four_logged() -> bool:
            return len(rejections(gw)) >= 4

        await eventually(four_logged, timeout_s=10, what="the rejections are logged")
        response = await client.post("/webhooks/inboxops", content=body, headers=wrong)
        assert response.status_code == 401
        await client.get("/healthz")  # after the sixth refusal: nothing more is logged
    logged = {(e["system"], e["reason"]): e for e in rejections(gw)}
    assert len(rejections(gw)) == 4, rejections(gw)
    signature = logged[("inboxops", "signature_invalid")]
    assert signature["status"] == 401
    assert signature["sender"] == "127.0.0.1"
    assert signature["left_out"] == 0
    assert "no webhook-signature matches" in signature["detail"]
    assert logged[("inboxops", "malformed_payload")]["status"] == 400
    assert logged[("devhelm", "signature_invalid")]["sender"] == "203.0.113.9"
    assert logged[("unknown", "unknown_system")]["status"] == 404
    text = gw.log_path.read_text()
    for secret_or_body in (
        KITS["inboxops"].webhook_secret,
        KITS["inboxops"].other_secret,
        "not json at all",
        "Checkout fails",
        wrong["webhook-signature"],
    ):
        assert secret_or_body not in text
