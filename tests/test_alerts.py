"""Alert notices (the optional ``alerts`` section) from a real ``syncgate serve`` to a
local receiver: a dead letter and a long 429 deferral each give one JSON notice, and a
second dead letter within ``min_interval_s`` gives none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar, Request, post

from app.serving import serve_asgi
from tests.blackbox import (
    GatewayProcess,
    admin_client,
    eventually,
    free_port,
    settled,
    simulators,
    write_config,
)

pytestmark = pytest.mark.slow


def receiver(notices: list[dict[str, Any]]) -> Litestar:
    @post("/hook", status_code=200)
    async def hook(request: Request[Any, Any, Any]) -> dict[str, str]:
        notices.append(await request.json())
        return {"ok": "yes"}

    return Litestar([hook])


async def test_dead_letters_and_long_deferrals_send_one_notice_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notices: list[dict[str, Any]] = []
    port = free_port()
    async with (
        serve_asgi(receiver(notices)) as hook_url,
        simulators(f"http://127.0.0.1:{port}") as (_sims, control),
    ):
        monkeypatch.setenv("SG_ALERT_URL", f"{hook_url}/hook")
        urls = {name: str(client.base_url) for name, client in control.items()}
        config = tmp_path / "config.yaml"
        write_config(
            config,
            f"sqlite:///{tmp_path / 'gateway.db'}",
            urls,
            alerts={"url_env": "SG_ALERT_URL", "min_interval_s": 300, "deferral_s": 600},
        )
        gateway = GatewayProcess(config, port, "alerts", tmp_path / "gateway.log")
        try:
            await gateway.ready()
            async with admin_client(gateway.url) as admin:
                # two DevHelm creates refused for good: two dead letters, one notice
                await control["devhelm"].post(
                    "/_sim/faults", json={"status": 422, "count": 2, "methods": ["POST"]}
                )
                # incident.io asks for a day: capped at 900 s, longer than deferral_s
                await control["incidentio"].post(
                    "/_sim/faults",
                    json={"status": 429, "count": 1, "retry_after": 86400, "methods": ["POST"]},
                )
                for n in range(2):
                    await control["inboxops"].post("/_sim/seed", json={"subject": f"Down {n}"})

                async def both_kinds() -> bool:
                    return {n["kind"] for n in notices} >= {"dead_letter", "deferred"}

                await eventually(both_kinds, timeout_s=30, what="a notice of each kind")

                async def two_dead() -> bool:
                    overview = (await admin.get("/systems")).json()
                    return bool(overview["dead_letters"] == 2)

                await eventually(two_dead, timeout_s=30, what="both creates dead-lettered")
                await admin.post("/systems/incidentio/resume")  # lifts the deferral
                await eventually(lambda: settled(admin), timeout_s=30, what="settled")
        finally:
            await gateway.stop()
    dead = [n for n in notices if n["kind"] == "dead_letter"]
    assert len(dead) == 1, notices  # the second one fell within min_interval_s
    assert dead[0]["system"] == "devhelm" and "dead-lettered" in dead[0]["text"]
    (deferred,) = [n for n in notices if n["kind"] == "deferred"]
    assert deferred["system"] == "incidentio" and "900 s" in deferred["text"]
    log = (tmp_path / "gateway.log").read_text()
    assert "SG_ALERT_URL" not in log and hook_url not in log  # the URL is a secret
