"""Schemathesis over the admin API's own OpenAPI document, with and without the key:
no 5xx, no answer that the document does not describe (status, content type, body
schema), and no state change on a refused request.

The gateway is the app ``create_app`` builds, served over loopback HTTP by uvicorn on
an event loop of its own thread, with the four simulators behind it (``running_rig``).
Its background loops are not started (``manage_lifecycle=False``: no dispatcher, inbox
worker or pollers), so the only writes to the database are the requests' own: comparing
every table before and after a refused request proves it changed nothing, with no noise
from background work. A ``syncgate serve`` process would run those loops and make that
comparison racy; tests/test_http_hygiene.py covers the served process.

The examples are bounded (``MAX_EXAMPLES`` per operation in the fuzzing phase, plus the
document's examples and schemathesis' coverage cases), about a minute in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import requests
import schemathesis
from schemathesis import Case

from app import tables
from app.gateway import Gateway
from app.http.app import create_app
from tests.admin_support import KEY, fan_out
from tests.conftest import open_store
from tests.rig import running_rig

MAX_EXAMPLES = 12

pytestmark = pytest.mark.slow


class Served:
    """The rig's gateway and simulators, served from a thread with its own event loop."""

    def __init__(self, tmp: Path) -> None:
        self.db_path = tmp / "syncgate.db"
        self.url = ""
        self.item_id = ""
        self.link_ids: list[int] = []
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, args=(tmp,), daemon=True)

    def __enter__(self) -> Served:
        self._thread.start()
        if not self._ready.wait(60) or self._failed is not None:
            raise RuntimeError("the gateway did not start") from self._failed
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def _run(self, tmp: Path) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve(tmp))
        except BaseException as exc:  # noqa: BLE001 - the test thread raises it
            self._failed = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self, tmp: Path) -> None:
        store = await open_store("sqlite", tmp)
        try:
            async with running_rig(store, serve_gateway=True) as rig:
                self.item_id, links = await fan_out(rig)
                self.link_ids = sorted(link["id"] for link in links.values())
                self.url = rig.gateway_url
                self._ready.set()
                await self._stop.wait()
        finally:
            await store.close()

    def rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, as the gateway committed them."""
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            return {
                table.name: db.execute(f"SELECT * FROM {table.name} ORDER BY 1").fetchall()
                for table in tables.metadata.sorted_tables
            }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with Served(tmp_path_factory.mktemp("schema")) as env:
        yield env


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def _document() -> dict[str, Any]:
    """The OpenAPI document ``create_app`` builds (it does not depend on the gateway, so
    it is read at collection time; ``test_the_document_is_the_one_served`` holds it to
    the served one)."""
    no_gateway = SimpleNamespace(secrets=SimpleNamespace(admin_key=None))  # routes only
    app = create_app(cast(Gateway, no_gateway), manage_lifecycle=False)
    return app.openapi_schema.to_schema()


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT).include(path_regex="^/admin")
# the key (or a wrong one) is the test's to send: no generated credentials
schema.config.generation.update(
    max_examples=MAX_EXAMPLES, deterministic=True, with_security_parameters=False
)
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])
# A request the document calls valid may still be refused: without the key (401), or for
# what it means: 404 (no such work item, link or vendor object), 409 (linked already,
# nothing to retry) or 422 (a system that is not configured, the same object twice, a
# change that names no field), each documented with a reason. Never 400: that would mean
# the document allows what the validator refuses.
schema.config.checks.positive_data_acceptance.expected_statuses = [
    "2xx",
    "401",
    "404",
    "409",
    "422",
]


def test_the_document_is_the_one_served(served: Served, session: requests.Session) -> None:
    served_doc = session.get(f"{served.url}/schema/openapi.json", timeout=30).json()
    document = json.loads(json.dumps(DOCUMENT, default=str))
    # the same operations; litestar may word a shared enum's component differently in a
    # second app of the same process, which changes no constraint
    assert served_doc["paths"] == document["paths"]
    assert set(served_doc["components"]["schemas"]) == set(document["components"]["schemas"])
    assert len(list(schema.get_all_operations())) >= 21


# the wrong credentials a refused request presents, in turn
_WRONG = itertools.cycle(
    [
        {},
        {"X-Admin-Key": "not-the-key"},
        {"Authorization": "Bearer not-the-key"},
        {"X-Admin-Key": KEY.upper()},
    ]
)


def _without_key(case: Case) -> None:
    """Drop whatever key schemathesis generated for the security schemes."""
    for name in list(case.headers or {}):
        if name.lower() in ("x-admin-key", "authorization"):
            del case.headers[name]


@schema.parametrize()
def test_without_the_key_every_request_is_refused_and_changes_nothing(
    case: Case, served: Served, session: requests.Session
) -> None:
    _without_key(case)
    before = served.rows()
    response = case.call(base_url=served.url, session=session, headers=next(_WRONG))
    assert response.status_code == 401, (case.method, case.formatted_path, response.text)
    assert response.headers["content-type"][0].startswith("application/problem+json")
    case.validate_response(response)
    assert served.rows() == before, (case.method, case.formatted_path)


# every other case that names a row names a real one, so the success paths are explored too
_AIM = itertools.cycle([True, False])
_PATTERNS = {
    "item_id": r"[A-Za-z0-9_-]{1,64}",
    "link_id": r"[0-9]{1,18}",
    "name": r"[A-Za-z0-9_-]{1,64}",
}


def _aim_at_real_rows(case: Case, served: Served) -> None:
    """Point a valid generated id at a real work item, link or system (an invalid one stays
    as generated: it is what the case tests)."""
    if not next(_AIM):
        return
    real = {"item_id": served.item_id, "link_id": str(served.link_ids[0]), "name": "inboxops"}
    for name, value in (case.path_parameters or {}).items():
        if name in real and re.fullmatch(_PATTERNS[name], str(value)):
            case.path_parameters[name] = real[name]
    body = case.body
    target = body.get("work_item_id") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(target, str) and 1 <= len(target) <= 1000:
        body["work_item_id"] = served.item_id  # RelinkIn: a valid id, moved to a real one


@schema.parametrize()
def test_with_the_key_no_5xx_every_answer_documented_refusals_change_nothing(
    case: Case, served: Served, session: requests.Session
) -> None:
    _aim_at_real_rows(case, served)
    before = served.rows()
    response = case.call(base_url=served.url, session=session, headers={"X-Admin-Key": KEY})
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
    assert response.status_code != 401, (case.method, case.formatted_path, response.text)
    case.validate_response(response)
    if response.status_code >= 400:
        assert served.rows() == before, (case.method, case.formatted_path, response.text)
