"""Logs are JSON lines with the sync context, and never carry a secret."""

from __future__ import annotations

import asyncio
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


@pytest.mark.parametrize("db_kind", ["sqlite"])
async def test_a_sync_logs_json_with_context_and_no_secret(store: Store) -> None:
    stream = io.StringIO()
    logs.configure("INFO", stream)
    try:
        async with running_rig(store, serve_gateway=True, webhooks=True) as rig:
            _, ids = await linked(rig)
            await rig.human("inboxops", ids["inboxops"], status="resolved")
            await rig.settle()
    finally:
        reset()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines, "the sync logged nothing"
    writes = [entry for entry in lines if entry["message"] == "wrote"]
    assert {entry["system"] for entry in writes} >= {"devhelm", "inboxops", "incidentio"}
    assert all(entry["work_item_id"] for entry in writes)
    processed = [entry for entry in lines if entry["message"] == "event processed"]
    assert processed and all(entry["event_id"] for entry in processed)
    text = stream.getvalue()
    for kit in KITS.values():
        assert kit.api_key not in text
        assert kit.webhook_secret not in text


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


class Writes(io.StringIO):
    """A stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def one_turn() -> None:
    """Let the loop run the callbacks scheduled so far (its ready queue is first in,
    first out: a callback scheduled now runs after them)."""
    loop = asyncio.get_running_loop()
    turned = loop.create_future()
    loop.call_soon(turned.set_result, None)
    await turned


async def test_the_lines_of_one_loop_turn_are_written_together_after_it() -> None:
    """A recorded batch logs a line per write: the lines of one turn of the event loop go
    out in one write, in order, once the turn is over; a line logged in another thread
    goes out at once."""
    stream = Writes()
    logs.configure("INFO", stream)
    log = logging.getLogger("syncgate.test")
    try:
        for n in range(16):
            log.info("wrote", extra={"n": n})
        assert stream.getvalue() == "", "written before the turn ended"
        await one_turn()
        assert stream.writes == 1
        assert [json.loads(line)["n"] for line in stream.getvalue().splitlines()] == [*range(16)]
        log.info("next turn")
        await one_turn()
        assert stream.writes == 2 and stream.getvalue().endswith('"next turn"}\n')
        await asyncio.to_thread(log.warning, "from a thread")
        assert stream.writes == 3 and "from a thread" in stream.getvalue()
    finally:
        reset()


def test_lines_left_by_a_loop_that_stopped_go_out_with_the_next() -> None:
    """A loop stopped before the turn's end leaves its lines waiting: they go out with
    the next line, from another loop or from outside any loop, and at exit (the logging
    module flushes every handler)."""
    stream = Writes()
    logs.configure("INFO", stream)
    log = logging.getLogger("syncgate.test")

    def log_and_stop(loop: asyncio.AbstractEventLoop, message: str) -> None:
        log.info(message)
        loop.stop()  # the loop ends with this turn: the scheduled flush never runs

    def a_loop_that_stops(message: str) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.call_soon(log_and_stop, loop, message)
            loop.run_forever()
        finally:
            loop.close()

    try:
        log.info("before any loop")
        assert stream.writes == 1, "a line outside a loop waited"
        a_loop_that_stops("first loop")
        assert "first loop" not in stream.getvalue()
        a_loop_that_stops("second loop")  # its own flush is scheduled, on its own loop
        assert "first loop" not in stream.getvalue()
        log.info("after the loops")
        lines = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
        assert lines == ["before any loop", "first loop", "second loop", "after the loops"]
        a_loop_that_stops("left at exit")
        logging.getLogger("syncgate").handlers[0].flush()  # what logging.shutdown does
        assert stream.getvalue().endswith('"left at exit"}\n')
    finally:
        reset()
