"""Logs are JSON lines with the sync context, and never carry a secret."""

from __future__ import annotations

import io
import json
import logging

import pytest

from app import logs
from app.store import Store
from tests.contract.kits import KITS
from tests.rig import linked, running_rig


def reset() -> None:
    logger = logging.getLogger("syncgate")
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


async def logged_sync(store: Store, level: str) -> str:
    """What the gateway logs at ``level`` while a ticket is linked, then resolved."""
    stream = io.StringIO()
    logs.configure(level, stream)
    try:
        async with running_rig(store, serve_gateway=True, webhooks=True) as rig:
            _, ids = await linked(rig)
            await rig.human("inboxops", ids["inboxops"], status="resolved")
            await rig.settle()
    finally:
        reset()
    return stream.getvalue()


@pytest.mark.parametrize("db_kind", ["sqlite"])
async def test_a_sync_logs_json_with_context_and_no_secret(store: Store) -> None:
    text = await logged_sync(store, "DEBUG")
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines, "the sync logged nothing"
    writes = [entry for entry in lines if entry["message"] == "wrote"]
    assert {entry["system"] for entry in writes} >= {"devhelm", "inboxops", "incidentio"}
    assert all(entry["work_item_id"] for entry in writes)
    processed = [entry for entry in lines if entry["message"] == "event processed"]
    assert processed and all(entry["event_id"] for entry in processed)
    for kit in KITS.values():
        assert kit.api_key not in text
        assert kit.webhook_secret not in text


@pytest.mark.parametrize("db_kind", ["sqlite"])
async def test_at_info_a_write_and_a_processed_event_log_no_line_of_their_own(
    store: Store,
) -> None:
    """The default level keeps what an operator acts on (README, "Logs"): the item
    created is there, the writes and the events processed (kept in the database) are not."""
    text = await logged_sync(store, "INFO")
    messages = [json.loads(line)["message"] for line in text.splitlines()]
    assert "work item created" in messages
    assert "wrote" not in messages and "event processed" not in messages


def test_values_under_secret_looking_keys_are_masked() -> None:
    stream = io.StringIO()
    logs.configure("INFO", stream)
    try:
        logging.getLogger("syncgate.test").info(
            "calling", extra={"api_key": "hs_live_abc", "system": "hookstream"}
        )
    finally:
        reset()
    entry = json.loads(stream.getvalue())
    assert entry["api_key"] == "***" and entry["system"] == "hookstream"


def test_the_http_servers_own_warnings_are_json_lines_too() -> None:
    stream = io.StringIO()
    logs.configure("INFO", stream)
    try:
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
        logging.getLogger("uvicorn.error").info("Started server process")  # below warning
    finally:
        reset()
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["level"] == "warning" and record["logger"] == "uvicorn.error"
    assert record["message"] == "Invalid HTTP request received."
