"""Every screen of the staff app, for the sweep: axe at both widths, and the screenshots
of docs/webapp.md.

The sweep (tests/webapp/test_sweep.py) seeds one church (`seed_church`, below), signs in
once per role, and for each `Screen` in `SCREENS`: opens its route, waits for `ready`,
runs `then` (e.g. opens a dialog), and at 1280 px and at 390 px runs axe-core
(`tests/webapp/a11y.py`: no serious or critical violation), checks the page does not
scroll sideways, and saves `<name>-desktop.png` / `<name>-phone.png` when screenshots are
asked for (`python -m tests.webapp.screenshots` writes them to docs/webapp/).

To register a new screen, add one `Screen(...)` to `SCREENS` (order = order in the docs).
`path` may name seeded ids as `{conversation_id}`, `{broadcast_id}`, `{scheduled_id}`,
`{recurring_id}`; if your screen needs data the seed does not make, add it to
`seed_church` and put its id in the returned dict. Workflow tests of your own can call
`tests.webapp.a11y.assert_accessible(browser, "what")` at any point, e.g. with a dialog
open.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from tests.carriers.webhook_kit import HANDSET, OURS

DESKTOP_WIDTH = (1280, 820)
PHONE_WIDTH = (390, 844)
WIDTHS = {"desktop": DESKTOP_WIDTH, "phone": PHONE_WIDTH}
SECOND_NUMBER = "+18445550002"  # held by the simulated account, attached to no profile


@dataclass(frozen=True)
class Screen:
    name: str          # test id and PNG stem: docs/webapp/<name>-desktop.png
    title: str         # caption in docs/webapp.md
    path: str          # route after the origin, e.g. "/#/inbox/{conversation_id}"
    ready: str         # JS expression, truthy once the screen shows its data
    role: str = "owner"  # who is signed in: owner, staff, or "" (signed out)
    then: str = ""     # JS run once ready (open a dialog, a <details>...)


def _q(selector: str) -> str:
    return f"document.querySelector({selector!r})"


SCREENS: list[Screen] = [
    Screen("signin", "Sign in", "/", _q("#signin-email"), role=""),
    Screen("inbox", "Inbox", "/#/inbox", _q(".conv-row")),
    Screen("new-conversation", "Inbox: starting a text", "/#/inbox",
           _q(".conv-row") + " && [...document.querySelectorAll('main button')]"
           ".some((b) => b.textContent === 'New conversation')",
           then="[...document.querySelectorAll('main button')]"
                ".find((b) => b.textContent === 'New conversation').click()"),
    Screen("conversation", "A conversation", "/#/inbox/{conversation_id}",
           _q(".meta.outbound [data-status=delivered]")),
    Screen("new-conversation", "Start a text (New conversation)", "/#/inbox", _q(".conv-row"),
           then="document.querySelector('.new-conv').click()"),
    Screen("send", "Send to a group", "/#/send", _q(".group-pick input")),
    Screen("send-progress", "A group send's progress", "/#/send/{broadcast_id}",
           "document.querySelector('.broadcast-state[data-outcome=completed]')"),
    Screen("scheduled", "Scheduled: upcoming sends and recurring texts", "/#/scheduled",
           _q(".sched-item[data-kind=recurring]") + " && "
           + _q(".sched-item[data-kind=broadcast]")),
    Screen("scheduled-edit", "Scheduled: editing a recurring text", "/#/scheduled",
           _q(".sched-item[data-kind=recurring] button"),
           then="[...document.querySelectorAll('.sched-item[data-kind=recurring] button')]"
                ".find((b) => b.textContent.startsWith('Edit')).click()"),
    Screen("templates", "Saved replies", "/#/templates", _q(".template")),
    Screen("members", "Members", "/#/members", _q("main tbody tr td button")),
    Screen("groups", "Groups", "/#/groups", _q("main tbody tr td button")),
    Screen("templates", "Saved replies (merge fields)", "/#/templates", _q(".template")),
    Screen("alerts", "Alerts for new texts (top bar)", "/#/inbox", _q(".conv-row"),
           then="document.querySelector('.alerts-button').click()"),
    Screen("numbers", "Numbers (owner)", "/#/numbers", _q(".number[data-status=failed]")),
    Screen("numbers-staff", "Numbers (staff: read-only)", "/#/numbers", _q(".number"),
           role="staff"),
    Screen("settings", "Settings", "/#/settings",
           "[...document.querySelectorAll('main input')].some((i) => i.value)"),
]


async def seed_church(api: Any, deps: Any, sim: Any) -> dict[str, Any]:
    """One church with what every screen shows: numbers (one ready, one needing a
    profile), groups, members (one opted out), a conversation with a delivered reply, a
    finished group send, a scheduled send, an active and a paused recurring text.
    Needs the simulator and a worker (tests/webapp/test_browser.py fixtures)."""
    from server.deps import Deps
    from server.services import number_linking
    from tests.factories import add_user, register

    owner = await register(api, church_name="Grace Community Church", name="Pat Jones")
    api.token = owner["access_token"]
    sim.config.account_numbers.append(SECOND_NUMBER)
    sim.config.unattached_numbers.append(SECOND_NUMBER)
    for phone in (OURS, SECOND_NUMBER):
        await _ok(api.post("/api/v1/numbers", json={"phone": phone, "provider": "telnyx",
                                                    "mps": 5}))
    await number_linking.relink(Deps(settings=deps.settings, db=deps.db, redis=deps.redis))
    groups = {name: (await _ok(api.post("/api/v1/groups", json={"name": name})))["id"]
              for name in ("Choir", "Youth")}
    ids = []
    for first, last, phone, opted_in in (("Ada", "Moss", "+12025550101", True),
                                         ("Ben", "Oaks", "+12025550102", True),
                                         ("Cy", "Pine", "+12025550103", False)):
        ids.append((await _ok(api.post("/api/v1/members", json={
            "first_name": first, "last_name": last, "phone": phone,
            "opt_in_sms": opted_in})))["id"])
    await _ok(api.post(f"/api/v1/groups/{groups['Choir']}/members", json={"member_ids": ids}))
    await _ok(api.post("/api/v1/templates", json={
        "name": "Practice reminder", "body": "Hi {first_name}, choir practice is at 7 tonight."}))
    staff = await add_user(api, owner["access_token"], "staff", name="Kim Staff")
    await _ok(api.post("/api/v1/templates", json={
        "name": "Service times",
        "body": "Hi {first_name|friend}, services at {church_name} are Sundays at 9 and 11."}))

    from server.carriers.simulator.carriers import inject_inbound
    assert (await inject_inbound(sim, "telnyx", HANDSET, OURS, "Is choir on tonight?",
                                 []))["status"] == 200
    conversations = await _ok(api.get("/api/v1/conversations"))
    conversation_id = conversations[0]["id"]
    await _ok(api.post(f"/api/v1/conversations/{conversation_id}/messages",
                       json={"body": "Yes, 7pm in the chapel"}))
    # A group send to that member: shown in their thread, marked as a group send.
    await _ok(api.post("/api/v1/messages", json={
        "body": "Pizza night Friday at 6! Coming?",
        "member_ids": [conversations[0]["member"]["id"]]}))
    sent = await _ok(api.post("/api/v1/messages", json={
        "body": "Choir practice moved to 7pm", "group_ids": [groups["Choir"]]}))
    later = (datetime.now(timezone.utc) + timedelta(days=2)).replace(
        hour=16, minute=30, second=0, microsecond=0)
    scheduled = await _ok(api.post("/api/v1/messages", json={
        "body": "Sunday picnic at noon. Bring a dish to share!",
        "group_ids": [groups["Choir"], groups["Youth"]], "scheduled_at": later.isoformat()}))
    weekly = await _ok(api.post("/api/v1/recurring-messages", json={
        "body": "Service starts at 9. See you there!", "group_ids": [groups["Choir"]],
        "schedule": "0 8 * * 0", "timezone": "America/Chicago"}))
    await _ok(api.post("/api/v1/recurring-messages", json={
        "body": "Youth group tonight at 6:30", "group_ids": [groups["Youth"]],
        "schedule": "30 18 * * 3", "timezone": "America/Chicago", "active": False}))
    api.token = None
    return {"owner": owner, "staff": staff, "conversation_id": conversation_id,
            "broadcast_id": sent["id"], "scheduled_id": scheduled["id"],
            "recurring_id": weekly["id"], "groups": groups}


async def _ok(call: Any) -> Any:
    status, body, _ = await call
    assert status in (200, 201, 202, 204), body
    return body["data"] if body else None
