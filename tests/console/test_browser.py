"""The console in a real browser (headless Chromium) against ``syncgate serve`` and the
four simulators: sign in, find a work item, watch it change by itself when a vendor
changes it, resolve it from the page and see the four vendor objects follow, retry a
dead write, pause and resume a system; a wrong key and a form without its CSRF token are
refused; an onboarding dry run carried out. Each page's screenshot is taken, into a
temporary folder; run with SYNCGATE_UPDATE_SCREENSHOTS=1 to write them to docs/console/
(they differ on every run, so a plain run leaves the tree clean):

    SYNCGATE_UPDATE_SCREENSHOTS=1 ./scripts/test tests/console
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from selenium.webdriver.support.ui import Select

from tests.blackbox import ADMIN_KEY
from tests.console.support import (
    SCREENSHOTS,
    UPDATE_SCREENSHOTS,
    Console,
    Installation,
    screenshot_folder,
    wait_for,
)
from tests.rig import ALL_RESOLVED

pytestmark = pytest.mark.slow


def test_a_wrong_key_is_refused(installation: Installation, browser: Console) -> None:
    browser.driver.delete_all_cookies()
    browser.open("/items")
    browser.until(lambda d: "/ui/login" in d.current_url, "sent to the sign-in form")
    browser.screenshot("login")
    browser.sign_in("not-the-admin-key")
    error = browser.until(lambda _: browser.text_of("#login-error"), "the refusal")
    assert error == "Wrong admin key."
    browser.open("/items")
    browser.until(lambda d: "/ui/login" in d.current_url, "still not signed in")


def test_sign_in_and_find_a_work_item(installation: Installation, browser: Console) -> None:
    ticket = installation.open_ticket("Checkout returns 502")
    installation.open_ticket("Refund emails delayed")
    detail = installation.linked(ticket)
    item_id = detail["item"]["id"]

    browser.sign_in()
    browser.until(lambda d: d.current_url.endswith("/ui/items"), "the work items after sign-in")
    search = browser.find("input[name=q]")
    search.send_keys("checkout")
    search.submit()
    browser.until(lambda d: "q=checkout" in d.current_url, "the search")
    rows = browser.until(lambda _: browser.all("#items tbody tr[data-item]"), "a result")
    assert [row.get_attribute("data-item") for row in rows] == [item_id]
    badges = rows[0].find_elements("css selector", ".badge")
    assert sorted(b.get_attribute("data-system") for b in badges) == [
        "devhelm",
        "inboxops",
        "incidentio",
    ]
    assert all("synced" in (b.get_attribute("class") or "") for b in badges)
    browser.open("/items")
    browser.until(lambda _: len(browser.all("#items tr[data-item]")) >= 2, "every item")
    browser.screenshot("work-items")


def test_the_list_refreshes_by_itself_and_keeps_its_filters(
    installation: Installation, browser: Console
) -> None:
    ticket = installation.open_ticket("Search index stale")
    item_id = installation.linked(ticket)["item"]["id"]
    browser.open("/items?q=index+stale&status=open")
    row = f'#items tr[data-item="{item_id}"] [data-field=status]'
    assert browser.until(lambda _: browser.text_of(row), "the item listed") == "open"
    browser.driver.execute_script("window.notReloaded = true")

    edit = installation.control["inboxops"].patch(
        f"/_sim/objects/{ticket}", json={"status": "in_progress"}
    )
    assert edit.status_code == 200, edit.text
    # filtered on status=open, the refreshed list no longer holds it...
    browser.until(lambda _: not browser.all(row), "the item gone from the open filter")
    assert browser.driver.execute_script("return window.notReloaded") is True
    assert browser.find("input[name=q]").get_attribute("value") == "index stale"
    # ...and without the status filter it shows the new status, again by itself
    browser.open("/items?q=index+stale")
    browser.driver.execute_script("window.notReloaded = true")
    assert browser.until(lambda _: browser.text_of(row), "listed") != "open"
    installation.control["inboxops"].patch(f"/_sim/objects/{ticket}", json={"status": "open"})
    browser.until(lambda _: browser.text_of(row) == "open", "the reopened status shown")
    assert browser.driver.execute_script("return window.notReloaded") is True


def test_resolve_from_the_page_and_the_four_objects_follow(
    installation: Installation, browser: Console
) -> None:
    ticket = installation.open_ticket("Webhooks to orders failing")
    detail = installation.linked(ticket)
    item_id = detail["item"]["id"]
    issue = installation.open_issue("Orders endpoint")
    browser.open(f"/items/{item_id}")

    # link the hookstream issue by its id: four objects now
    Select(browser.find("#l-system")).select_by_value("hookstream")
    browser.find("#l-id").send_keys(issue)
    browser.find("#link-form button").click()
    assert browser.flash() == f"Linked hookstream object {issue}."
    browser.until(lambda _: len(browser.all("#links tr[data-link]")) == 4, "four objects")

    Select(browser.find("#f-status")).select_by_value("resolved")
    browser.find("#change-form button").click()
    assert browser.flash().startswith("Changed status")

    def resolved() -> bool:
        ids = {link["system"]: link["external_id"] for link in detail["links"]}
        ids["hookstream"] = issue
        return all(
            installation.objects(system)[ids[system]]["status"] == ALL_RESOLVED[system]
            for system in ("hookstream", "devhelm", "inboxops", "incidentio")
        )

    wait_for(resolved, "the four vendor objects resolved")
    browser.until(lambda _: browser.text_of("#item-status") == "resolved", "resolved shown")
    browser.until(
        lambda _: len(browser.all("#links .badge.synced")) == 4, "the four objects in step"
    )
    browser.screenshot("work-item")


def test_retry_a_dead_write(installation: Installation, browser: Console) -> None:
    ticket = installation.open_ticket("Status page stuck")
    detail = installation.linked(ticket)
    item_id = detail["item"]["id"]
    (incident,) = [x["external_id"] for x in detail["links"] if x["system"] == "devhelm"]
    fault = installation.control["devhelm"].post(
        "/_sim/faults", json={"status": 422, "count": 1, "methods": ["PUT", "PATCH"]}
    )
    assert fault.status_code == 201, fault.text
    browser.open(f"/items/{item_id}")
    Select(browser.find("#f-status")).select_by_value("monitoring")
    browser.find("#change-form button").click()
    browser.flash()

    browser.open("/outbox?state=dead&system=devhelm")
    row = browser.until(lambda _: browser.all("#live tr[data-write]"), "the dead write listed")
    assert "422" in row[0].text
    browser.screenshot("outbox")
    assert installation.objects("devhelm")[incident]["status"] != "MONITORING"
    row[0].find_element("css selector", "button:not(.danger)").click()
    assert browser.flash() == "Retrying the dead write to devhelm now."
    wait_for(
        lambda: installation.objects("devhelm")[incident]["status"] == "MONITORING",
        "the retried write at DevHelm",
    )
    browser.until(lambda _: browser.all("#no-writes"), "no dead write left")


def test_pause_and_resume_a_system(installation: Installation, browser: Console) -> None:
    browser.open("/systems")
    state = '#systems tr[data-system="incidentio"] [data-field=state]'
    assert browser.text_of(state) == "running"
    browser.find('button[aria-label="Pause incidentio"]').click()
    assert browser.flash().startswith("incidentio paused")
    assert browser.text_of(state) == "paused"
    overview = installation.admin.get("/systems").json()
    assert {s["name"]: s["paused"] for s in overview["systems"]}["incidentio"] is True
    browser.screenshot("systems")
    browser.find('button[aria-label="Resume incidentio"]').click()
    assert browser.flash() == "incidentio resumed."
    assert browser.text_of(state) == "running"
    overview = installation.admin.get("/systems").json()
    assert {s["name"]: s["paused"] for s in overview["systems"]}["incidentio"] is False


def test_a_form_posted_without_its_csrf_token_is_refused(
    installation: Installation, browser: Console
) -> None:
    browser.open("/systems")
    browser.driver.execute_script(
        "document.querySelectorAll('input[name=_csrf_token]').forEach(e => e.remove())"
    )
    browser.find('button[aria-label="Pause devhelm"]').click()
    detail = browser.until(lambda _: browser.text_of("#error-detail"), "the refusal")
    assert detail.startswith("403: CSRF token verification failed")
    overview = installation.admin.get("/systems").json()
    assert {s["name"]: s["paused"] for s in overview["systems"]}["devhelm"] is False


def test_onboarding_plans_then_carries_the_backfill_out(
    installation: Installation, browser: Console
) -> None:
    ticket = installation.history_ticket  # opened before the gateway first started
    assert installation.item_of("inboxops", ticket) is None  # history is left alone
    browser.open("/onboarding")
    browser.find('input[name=systems][value="inboxops"]').click()
    browser.find("#since").send_keys("1d")
    browser.find("#plan-form button[type=submit]").click()
    row = f'#plan-lines tr[data-object="inboxops:{ticket}"]'
    action = browser.until(lambda _: browser.text_of(f"{row} [data-field=action]"), "the plan")
    assert action == "create"
    assert "Invoices sent twice" in browser.find(row).text
    assert browser.text_of("#summary").endswith(" skip")
    assert installation.item_of("inboxops", ticket) is None  # the dry run changed nothing
    browser.screenshot("onboarding")

    browser.find("#confirm").click()
    browser.find("#run").click()
    outcome = f"{row} [data-field=outcome]"
    assert browser.until(lambda _: browser.text_of(outcome), "the outcome") == "created"
    detail = installation.linked(ticket)  # the rule's DevHelm and incident.io objects
    assert browser.find(f"{row} [data-field=item]").get_attribute("href") == (
        f"{installation.url}/ui/items/{detail['item']['id']}"
    )
    made = {link["system"]: link["external_id"] for link in detail["links"]}
    devhelm = installation.objects("devhelm")[made["devhelm"]]
    assert devhelm["title"] == "Invoices sent twice (last week)", devhelm
    assert made["incidentio"] in installation.objects("incidentio")


def test_events_and_sign_out(installation: Installation, browser: Console, tmp_log: Path) -> None:
    forged = httpx.post(
        f"{installation.url}/webhooks/inboxops",
        content=b'{"type": "ticket.updated"}',
        headers={"content-type": "application/json"},
    )
    assert forged.status_code == 401
    browser.open("/events?source=webhook&system=inboxops")
    rows = browser.until(lambda _: browser.all("#events tr[data-event]"), "webhooks listed")
    assert all("inboxops" in r.text and "webhook" in r.text for r in rows)
    refused = browser.find("#rejected tbody tr").text
    assert "inboxops" in refused and "401" in refused, refused
    browser.screenshot("events")
    browser.find(".signout button").click()
    browser.until(lambda d: "/ui/login" in d.current_url, "signed out")
    browser.open("/items")
    browser.until(lambda d: "/ui/login" in d.current_url, "the session ended")
    assert ADMIN_KEY not in tmp_log.read_text(), "the admin key was logged"


def test_screenshots_go_to_docs_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(UPDATE_SCREENSHOTS, raising=False)
    assert screenshot_folder(tmp_path) == tmp_path
    monkeypatch.setenv(UPDATE_SCREENSHOTS, "0")
    assert screenshot_folder(tmp_path) == tmp_path
    monkeypatch.setenv(UPDATE_SCREENSHOTS, "1")
    assert screenshot_folder(tmp_path) == SCREENSHOTS
    assert Path(__file__).resolve().parents[2] / "docs" / "console" == SCREENSHOTS
