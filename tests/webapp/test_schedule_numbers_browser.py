"""The Scheduled and Numbers screens and the small fixes, in real chromium at 1280 px and
390 px: edit and cancel an upcoming send, a recurring text in plain words with its next
runs, pause/resume and past runs, all kept current by the stream; a number's status with
its reason and what to do, check again, add/remove (owner) and read-only (staff); the
settings confirmation, a password error that does not echo, a group's Add list without
its members, and the question before a CSV import creates groups."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from server.deps import Deps
from server.services import number_linking, recurring
from tests.carriers.webhook_kit import OURS
from tests.factories import add_user, register
from tests.webapp.a11y import assert_accessible
from tests.webapp.browser import Browser
from tests.webapp.screens import PHONE_WIDTH, SECOND_NUMBER
from tests.webapp.test_browser import browser, chrome, severe, sign_in, sim  # noqa: F401
from tests.workers.bulk import sql

CARD = "[...document.querySelectorAll('.sched-item')]"


async def church(api: Any, sim: Any) -> dict[str, Any]:
    owner = await register(api, church_name="Hope Church", name="Sam Lee")
    api.token = owner["access_token"]
    status, body, _ = await api.post("/api/v1/numbers", json={"phone": OURS,
                                                              "provider": "telnyx"})
    assert status == 201, body
    owner["number_id"] = body["data"]["id"]
    status, body, _ = await api.post("/api/v1/groups", json={"name": "Choir"})
    owner["choir"] = body["data"]["id"]
    ids = []
    for first, phone in (("Ada", "+12025550101"), ("Ben", "+12025550102")):
        status, body, _ = await api.post("/api/v1/members", json={
            "first_name": first, "last_name": "Moss", "phone": phone})
        assert status == 201, body
        ids.append(body["data"]["id"])
    await api.post(f"/api/v1/groups/{owner['choir']}/members", json={"member_ids": ids[:1]})
    return owner


async def click(browser: Browser, scope: str, label: str) -> None:
    """Click the button whose text starts with `label` inside `scope` (a CSS selector)."""
    await browser.wait(f"return [...document.querySelectorAll('{scope} button')]"
                       f".some((b) => b.textContent.startsWith({label!r}))", what=label)
    await browser.js(f"[...document.querySelectorAll('{scope} button')]"
                     f".find((b) => b.textContent.startsWith({label!r})).click()")


async def live(browser: Browser, user: dict[str, Any], path: str) -> None:
    await sign_in(browser, user["email"], user["password"])
    await browser.wait("return document.querySelector('.conn[data-state=live]')", what="live")
    await browser.open(path)


@pytest.mark.gen_test(timeout=120)
async def test_scheduled_screen(browser: Browser, api: Any, deps: Any, sim: Any) -> None:
    owner = await church(api, sim)
    later = (datetime.now(timezone.utc) + timedelta(days=2)).replace(microsecond=0)
    status, body, _ = await api.post("/api/v1/messages", json={
        "body": "Sunday picnic at noon", "group_ids": [owner["choir"]],
        "scheduled_at": later.isoformat()})
    message_id = body["data"]["id"]
    await live(browser, owner, "/#/scheduled")
    await browser.wait(f"return {CARD}.some((c) => c.innerText.includes('Sunday picnic'))",
                       what="the upcoming send")

    # Edit it (1280 px): the dialog saves, the card shows the new text.
    await click(browser, ".sched-item[data-kind=broadcast]", "Edit")
    await browser.wait("return document.querySelector('dialog[open] textarea')", what="dialog")
    await assert_accessible(browser, "editing a scheduled send")
    await browser.type("dialog[open] textarea", "Picnic moved to 1 pm")
    await click(browser, "dialog[open]", "Save changes")
    await browser.wait(f"return !document.querySelector('dialog[open]') && {CARD}"
                       ".some((c) => c.innerText.includes('Picnic moved to 1 pm'))",
                       what="the edited send")

    # Another staff member's change arrives through the stream, no reload.
    await api.patch(f"/api/v1/messages/{message_id}", json={"body": "Picnic at 2 pm now"})
    await browser.wait(f"return {CARD}.some((c) => c.innerText.includes('Picnic at 2 pm'))",
                       what="a change made elsewhere")
    await api.post("/api/v1/recurring-messages", json={
        "body": "Service at 9", "group_ids": [owner["choir"]], "schedule": "0 8 * * 0",
        "timezone": "America/Chicago"})
    words = await browser.wait("const w = document.querySelector('.sched-words');"
                               "return w && w.innerText", what="the series from elsewhere")
    assert words == "Every Sunday at 8:00 AM, Central"

    # A new series from the dialog: plain words and five next runs in its own zone.
    await click(browser, "main", "New recurring text")
    await browser.wait("return document.querySelector('dialog[open] textarea')", what="dialog")
    await browser.type("dialog[open] textarea", "Youth group tonight")
    await browser.js("const d = document.querySelector('dialog[open]');"
                     "const [kind, day] = d.querySelectorAll('select');"
                     "kind.value = 'weekly'; day.value = '3';"
                     "d.querySelector('input[type=time]').value = '18:30';"
                     "const tz = [...d.querySelectorAll('input')]"
                     "  .find((i) => i.value.includes('/'));"
                     "tz.value = 'America/Chicago';"
                     "d.querySelector('.group-pick input').click();")
    await assert_accessible(browser, "a new recurring text")
    await click(browser, "dialog[open]", "Create")
    card = ("[...document.querySelectorAll('.sched-item[data-kind=recurring]')]"
            ".find((c) => c.innerText.includes('Youth group tonight'))")
    text = await browser.wait(f"const c = {card}; return c && c.innerText", what="the series")
    assert text.startswith("Every Wednesday at 6:30 PM, Central")
    assert await browser.js(f"return {card}.querySelectorAll('.sched-next li').length") == 5
    assert (await browser.js(f"return {card}.querySelector('.sched-next li').innerText"
                             )).startswith("Wed")

    # Edit the Sunday series: every day at 7:15 now, in words at once.
    service = ("[...document.querySelectorAll('.sched-item[data-kind=recurring]')]"
               ".find((c) => c.innerText.includes('Service at 9'))")
    await browser.js(f"[...{service}.querySelectorAll('button')]"
                     ".find((b) => b.textContent.startsWith('Edit')).click()")
    await browser.wait("return document.querySelector('dialog[open] select')", what="dialog")
    await browser.js("const d = document.querySelector('dialog[open]');"
                     "const kind = d.querySelector('select'); kind.value = 'daily';"
                     "kind.dispatchEvent(new Event('change'));"
                     "d.querySelector('input[type=time]').value = '07:15';")
    await click(browser, "dialog[open]", "Save changes")
    await browser.wait(f"const c = {service}; return c && c.querySelector('.sched-words')"
                       ".innerText === 'Every day at 7:15 AM, Central'", what="the edited series")

    # At 390 px: pause and resume, then the past runs, then cancel the one-off send.
    await browser.size(*PHONE_WIDTH)
    youth = ".sched-item[data-kind=recurring]:first-child"
    await click(browser, youth, "Pause")
    await browser.wait(f"const c = {card}; return c && c.innerText.includes('Paused') &&"
                       " !c.querySelector('.sched-next')", what="paused")
    await click(browser, youth, "Resume")
    await browser.wait(f"const c = {card}; return c && c.innerText.includes('Active')",
                       what="resumed")
    sql(deps.settings, "UPDATE recurring_messages SET next_run_at = now() - interval '1 minute'"
                       " WHERE body = 'Youth group tonight'")
    await recurring.run_due(Deps(settings=deps.settings, db=deps.db, redis=deps.redis))
    await browser.wait(f"const c = {card}; return c && c.querySelector('.sched-last')",
                       what="the series after its run (schedule.changed)")
    await browser.js(f"const d = {card}.querySelector('details'); d.open = true;")
    run = await browser.wait(f"const a = {card}.querySelector('.sched-history a');"
                             "return a && a.innerText", what="the past run")
    assert run == "Sent"
    await assert_accessible(browser, "scheduled at 390 px")
    assert await browser.js("return document.documentElement.scrollWidth") <= PHONE_WIDTH[0]
    await click(browser, ".sched-item[data-kind=broadcast]", "Cancel send")
    await click(browser, "dialog[open]", "Cancel the send")
    await browser.wait("return !document.querySelector('.sched-item[data-kind=broadcast]') &&"
                       " document.querySelector('main').innerText.includes('No group sends')",
                       what="the canceled send gone")
    _, body, _ = await api.get(f"/api/v1/messages/{message_id}")
    assert body["data"]["status"] == "canceled"
    assert severe(await browser.console()) == []


@pytest.mark.gen_test(timeout=120)
async def test_numbers_screen_and_small_fixes(browser: Browser, api: Any, deps: Any,
                                              sim: Any, tmp_path: Any) -> None:
    owner = await church(api, sim)
    staff = await add_user(api, owner["access_token"], "staff", name="Kim Staff")
    sim.config.account_numbers.append(SECOND_NUMBER)
    sim.config.unattached_numbers.append(SECOND_NUMBER)
    await live(browser, owner, "/#/numbers")
    await browser.wait("return document.querySelector('.number')", what="numbers")

    # Owner, 1280 px: add a number; once the carrier answers it says why and what to do.
    await browser.js("const f = [...document.querySelectorAll('main form')].pop();"
                     "f.querySelector('input[type=tel]').value = '(844) 555-0002';")
    await click(browser, "main", "Add number")
    await browser.wait("return document.querySelectorAll('.number').length === 2",
                       what="the new number")
    assert await browser.js("return document.querySelectorAll('.number')[1].dataset.status"
                            ) == "pending"
    await number_linking.relink(Deps(settings=deps.settings, db=deps.db, redis=deps.redis))
    await browser.open("/#/settings")
    await browser.open("/#/numbers")
    failed = await browser.wait("const n = document.querySelector('.number[data-status=failed]');"
                                "return n && n.innerText", what="the failed number")
    assert "Needs attention" in failed and "not attached to a messaging profile" in failed
    assert "What to do: Attach it to a messaging profile" in failed
    ready = await browser.text(".number[data-status=linked]")
    assert "Default" in ready and "Ready" in ready and "(844) 555-0001" in ready
    await assert_accessible(browser, "numbers")
    sim.config.unattached_numbers.clear()  # fixed in the carrier's portal
    await click(browser, ".number[data-status=failed]", "Check again")
    await browser.wait("return !document.querySelector('.number[data-status=failed]') &&"
                       " document.querySelector('.number[data-status=pending]')",
                       what="checked again")
    # The linking job's answer arrives through the stream (number.updated), no reload.
    await number_linking.relink(Deps(settings=deps.settings, db=deps.db, redis=deps.redis))
    await browser.wait("return document.querySelectorAll('.number[data-status=linked]')"
                       ".length === 2", what="the number ready, live")

    # 390 px: remove it after the confirm dialog.
    await browser.size(*PHONE_WIDTH)
    await click(browser, ".number:nth-child(2)", "Remove")
    assert "Remove (844) 555-0002?" in await browser.text("dialog[open]")
    await click(browser, "dialog[open]", "Remove")
    await browser.wait("return document.querySelectorAll('.number').length === 1", what="removed")
    assert await browser.js("return document.documentElement.scrollWidth") <= PHONE_WIDTH[0]

    # Settings: a visible confirmation; a short password's error does not repeat it.
    await browser.size(1280, 820)
    await browser.open("/#/settings")
    await browser.wait("return [...document.querySelectorAll('main input')]"
                       ".some((i) => i.value === 'Hope Church')", what="settings")
    await click(browser, "main form", "Save")
    saved = await browser.wait("const s = document.querySelector('.saved');"
                               "return s && s.checkVisibility() && s.innerText", what="saved")
    assert saved.startswith("✓ Saved at")
    await browser.js("document.querySelectorAll('main details').forEach((d) => d.open = true);"
                     "const f = [...document.querySelectorAll('main form')].pop();"
                     "const i = f.querySelectorAll('input');"
                     "i[0].value = 'Lee'; i[1].value = 'lee@example.org';"
                     "f.querySelector('input[type=password]').value = 'abc123';")
    await click(browser, "main", "Add user")
    problem = await browser.wait("const e = [...document.querySelectorAll('main .error-text')]"
                                 ".find((x) => !x.hidden); return e && e.innerText",
                                 what="the password error")
    assert problem == "Password: Must be at least 8 characters." and "abc123" not in problem

    # Groups (390 px): the Add list leaves out members already in the group.
    await browser.size(*PHONE_WIDTH)
    await browser.open("/#/groups")
    await click(browser, "main tbody", "Choir")
    await browser.wait("return document.querySelector('input[type=search]')", what="group")
    await browser.type("input[type=search]", "Moss")
    offered = await browser.wait("const l = document.querySelector('main ul li');"
                                 "return l && l.parentElement.innerText", what="the add list")
    assert "Ben" in offered and "Ada" not in offered
    await click(browser, "main ul", "Add")
    await browser.wait("return document.querySelector('main ul').innerText"
                       ".includes('already in this group')", what="Ben added and gone")

    # CSV import naming a group that does not exist: asked first; Cancel imports nothing.
    csv = tmp_path / "people.csv"
    csv.write_text('first_name,last_name,phone,groups\nEve,Stone,2025550105,"Ushers;choir"\n'
                   "Fay,Wood,2025550106,Ushers\n")
    await browser.size(1280, 820)
    await browser.open("/#/members")
    await browser.js("document.querySelector('details.card').open = true")
    await browser.keys("input[type=file]", str(csv))
    await click(browser, "details.card form", "Import")
    question = await browser.wait("const d = document.querySelector('dialog[open]');"
                                  "return d && d.innerText", what="the question")
    assert "Create a new group?" in question and "Ushers" in question
    assert "choir" not in question.lower().replace("create it", "")
    await assert_accessible(browser, "the new-group question")
    await click(browser, "dialog[open]", "Cancel")
    await browser.wait("return document.querySelector('details.card .error-text')"
                       ".innerText === 'Nothing imported.'", what="nothing imported")
    await click(browser, "details.card form", "Import")
    await click(browser, "dialog[open]", "Create it and import")
    summary = await browser.wait("const n = document.querySelector('details.card .notice');"
                                 "return n && n.innerText", what="the import summary")
    assert summary.startswith("2 members created")
    _, body, _ = await api.get("/api/v1/groups")
    assert sorted(g["name"] for g in body["data"]) == ["Choir", "Ushers"]

    # Staff (390 px): the Numbers screen is read-only.
    await browser.call(browser.driver.delete_all_cookies)
    await browser.size(*PHONE_WIDTH)
    await live(browser, staff, "/#/numbers")
    text = await browser.wait("const m = document.querySelector('main');"
                              "return document.querySelector('.number') && m.innerText",
                              what="numbers for staff")
    assert "Only the church owner can add, change or remove numbers." in text
    assert await browser.js("return document.querySelectorAll('main button, main form')"
                            ".length") == 0
    await assert_accessible(browser, "numbers for staff")
    # Staff read the Scheduled screen too, without the buttons that change it.
    await api.post("/api/v1/recurring-messages", token=owner["access_token"], json={
        "body": "Service at 9", "group_ids": [owner["choir"]], "schedule": "0 8 * * 0",
        "timezone": "America/Chicago"})
    await browser.open("/#/scheduled")
    await browser.wait("return document.querySelector('.sched-words')", what="staff's view")
    assert await browser.js("return [...document.querySelectorAll('main button')]"
                            ".map((b) => b.textContent)") == []
    assert severe(await browser.console()) == []
