"""Issue 15 in a real headless chromium, at 1280 px and 390 px: start a text from a member
and from the inbox, a group send in the member's thread with its live status, and the
contact panel (naming, assignment, notes, consent) with its live updates."""
from __future__ import annotations

from typing import Any

import pytest

from tests.carriers.webhook_kit import OURS
from tests.factories import add_user, register
from tests.factories_inbox import add_number, text_in
from tests.webapp.a11y import assert_accessible
from tests.webapp.browser import DESKTOP, Browser
from tests.webapp.test_browser import (assert_contrast, assert_labelled, browser, chrome,
                                       inject, severe, sign_in, sim, worker)

__all__ = ["browser", "chrome", "sim", "worker"]
API = "/api/v1"
PHONE_390 = (390, 844)
WIDTHS = [pytest.param(DESKTOP, id="1280"), pytest.param(PHONE_390, id="390")]


async def _members(api: Any, token: str) -> dict[str, dict[str, Any]]:
    out = {}
    for first, phone, opted_in in (("Ada", "+12025550111", True), ("Ben", "+12025550112", True),
                                   ("Cy", "+12025550113", False)):
        status, body, _ = await api.post(f"{API}/members", json={
            "first_name": first, "last_name": "Moss", "phone": phone, "opt_in_sms": opted_in},
            token=token)
        assert status == 201, body
        out[first] = body["data"]
    return out


async def click(browser: Browser, selector: str) -> None:
    """Click through the page: rows and headers re-render on stream events, which can
    leave a WebDriver element reference stale between finding and clicking it."""
    assert await browser.js("const e = document.querySelector(arguments[0]);"
                            "if (e) e.click(); return Boolean(e)", selector), selector


async def _live(browser: Browser) -> None:
    await browser.wait("return document.querySelector('.conn[data-state=live]')", what="live")


async def _send_in_dialog(browser: Browser, text: str) -> None:
    await browser.type("dialog[open] textarea", text)
    await browser.keys("dialog[open] textarea", "\ue007")  # Enter sends


async def _opened_with(browser: Browser, text: str) -> str:
    """The inbox opened on the new conversation, the text shown as an outbound bubble."""
    await browser.wait("return !document.querySelector('dialog[open]') &&"
                       " location.hash.startsWith('#/inbox/')", what="the conversation")
    return await browser.wait(
        "const b = [...document.querySelectorAll('.bubble.outbound')]"
        ".find((x) => x.textContent.includes(arguments[0]));"
        "return b && document.querySelector('.conv-head h2').innerText", text,
        what="the sent text in the thread")


@pytest.mark.parametrize("size", WIDTHS)
@pytest.mark.gen_test(timeout=90)
async def test_start_a_text_from_a_member_and_from_the_inbox(browser: Browser, api: Any,
                                                             deps: Any, size: Any) -> None:
    owner = await register(api, church_name="Hope Church", name="Sam Lee")
    await add_number(deps, owner["church_id"])
    await _members(api, owner["access_token"])
    await browser.size(*size)
    await sign_in(browser, owner["email"], owner["password"])
    await _live(browser)

    # From a member: "Message" opens the dialog addressed to them; Enter sends.
    await browser.open("/#/members")
    await browser.wait("return document.querySelectorAll('main tbody tr').length === 3",
                       what="members")
    # Only opted-in members can be messaged.
    assert await browser.js("return document.querySelectorAll('.message-member').length") == 2
    await browser.js("[...document.querySelectorAll('.message-member')]"
                     ".find((b) => b.textContent.includes('Ada')).click()")
    to = await browser.wait("const t = document.querySelector('dialog[open] .to');"
                            "return t && t.innerText", what="the dialog for Ada")
    assert "Ada Moss" in to and "(202) 555-0111" in to
    await assert_labelled(browser)
    await assert_contrast(browser)
    await assert_accessible(browser, f"the Message dialog at {size[0]} px")
    await browser.screenshot(f"new-conversation-member-{size[0]}")
    await _send_in_dialog(browser, "Hi Ada, choir is at 7 tonight")
    assert await _opened_with(browser, "Hi Ada, choir is at 7 tonight") == "Ada Moss"
    if size == DESKTOP:
        assert "Ada Moss" in await browser.text(".conv-row[aria-current=true]")

    # From the inbox: "New conversation", find a member by name, pick, send.
    if size != DESKTOP:
        await click(browser, ".conv-head a.back")
    await browser.wait("return document.querySelector('.new-conv') &&"
                       " document.querySelector('.new-conv').checkVisibility()",
                       what="the New conversation button")
    await click(browser, ".new-conv")
    await browser.wait("return document.querySelector('dialog[open] input[type=search]')",
                       what="the member search")
    await browser.type("dialog[open] input[type=search]", "moss")
    await browser.wait("return document.querySelectorAll('.member-pick button').length === 3",
                       what="three matches")
    # An opted-out member is marked, and the text cannot be sent to them.
    await browser.js("[...document.querySelectorAll('.member-pick button')]"
                     ".find((b) => b.textContent.includes('Cy')).click()")
    blocked = await browser.wait("const e = document.querySelector('dialog[open] .error-text');"
                                 "return e && !e.hidden && e.innerText", what="opted-out note")
    assert "opted out" in blocked
    assert await browser.js("return document.querySelector('dialog[open] button[type=submit]')"
                            ".disabled") is True
    await browser.js("[...document.querySelectorAll('dialog[open] .to button')][0].click()")
    await browser.type("dialog[open] input[type=search]", "Ben")
    await browser.wait("return document.querySelectorAll('.member-pick button').length === 1",
                       what="Ben")
    await click(browser, ".member-pick button")
    await assert_labelled(browser)
    await assert_accessible(browser, f"the New conversation dialog at {size[0]} px")
    await browser.screenshot(f"new-conversation-inbox-{size[0]}")
    await _send_in_dialog(browser, "Welcome to Hope, Ben!")
    assert await _opened_with(browser, "Welcome to Hope, Ben!") == "Ben Moss"
    assert await browser.js("return document.documentElement.scrollWidth") <= size[0]
    _, page, _ = await api.get(f"{API}/conversations", token=owner["access_token"])
    assert sorted(c["member"]["first_name"] for c in page["data"]) == ["Ada", "Ben"]
    assert severe(await browser.console()) == []


@pytest.mark.gen_test(timeout=90)
async def test_a_group_send_shows_in_the_thread_with_its_live_status(
        browser: Browser, api: Any, sim: Any, worker: Any) -> None:
    owner = await register(api, church_name="Grace Chapel", name="Pat Jones")
    status, body, _ = await api.post(f"{API}/numbers", json={
        "phone": OURS, "provider": "telnyx", "mps": 10}, token=owner["access_token"])
    assert status == 201, body
    await sign_in(browser, owner["email"], owner["password"])
    await _live(browser)
    await inject(sim, "Hi, new here")
    await browser.wait("return document.querySelector('.conv-row')", what="the conversation")
    await click(browser, ".conv-row")
    await browser.wait("return document.querySelector('.bubble.inbound')", what="the thread")
    _, convs, _ = await api.get(f"{API}/conversations", token=owner["access_token"])
    member_id = convs["data"][0]["member"]["id"]

    # A group send to this member arrives in the open thread, marked, and its status
    # follows the broadcast's progress events to Delivered (no reload, no polling).
    status, sent, _ = await api.post(f"{API}/messages", json={
        "body": "Pizza night Friday at 6! Coming?", "member_ids": [member_id]},
        token=owner["access_token"])
    assert status == 202, sent
    await browser.wait("return document.querySelector('.bubble.group-send')", timeout=20,
                       what="the group send in the thread")
    label = await browser.text(".bubble.group-send")
    assert label.startswith("Group send") and "Pizza night Friday at 6!" in label, label
    assert await browser.js("return document.querySelector('.bubble.group-send a')"
                            ".getAttribute('href')") == f"#/send/{sent['data']['id']}"
    await browser.wait(
        "const m = document.querySelector('.meta[data-for=\"' + arguments[0] + '\"]"
        " [data-status]'); return m && m.dataset.status === 'delivered'", sent["data"]["id"],
        timeout=20, what="the group send to reach delivered")
    await inject(sim, "Count me in for pizza!")
    await browser.wait("return document.querySelectorAll('.bubble').length === 3",
                       what="the reply")
    kinds = await browser.js("return [...document.querySelectorAll('.bubble')]"
                             ".map((b) => b.dataset.kind)")
    assert kinds == ["text", "broadcast", "text"]  # the reply reads in context
    await assert_contrast(browser)
    await assert_accessible(browser, "a thread with a group send at 1280 px")
    await browser.screenshot("group-send-in-thread-1280")
    await browser.size(*PHONE_390)
    await browser.open(f"/#/inbox/{convs['data'][0]['id']}")
    await browser.wait("return document.querySelectorAll('.bubble').length === 3",
                       what="the thread on a phone")
    await browser.screenshot("group-send-in-thread-390")
    assert await browser.js("return document.querySelector('.bubble.group-send')"
                            ".checkVisibility()")
    assert await browser.js("return document.documentElement.scrollWidth") <= PHONE_390[0]
    await assert_accessible(browser, "a thread with a group send at 390 px")
    assert severe(await browser.console()) == []


@pytest.mark.parametrize("size", WIDTHS)
@pytest.mark.gen_test(timeout=90)
async def test_contact_panel_names_assigns_and_keeps_notes(browser: Browser, api: Any,
                                                           deps: Any, size: Any) -> None:
    owner = await register(api, church_name="Hope Church", name="Sam Lee")
    staff = await add_user(api, owner["access_token"], "staff", name="Kim Staff")
    number = await add_number(deps, owner["church_id"])
    phone = "+12025550177"
    result = await text_in(deps, number, phone, "Who do I ask about the retreat?")
    conv_id = result.events[0]["data"]["conversation"]["id"]
    await browser.size(*size)
    await sign_in(browser, staff["email"], staff["password"])  # staff may do all of it
    await _live(browser)
    await browser.open(f"/#/inbox/{conv_id}")
    await browser.wait("return document.querySelector('.bubble.inbound')", what="the thread")
    if size != DESKTOP:  # on a phone the panel is a view of its own
        assert await browser.js("return document.querySelector('.contact-panel').hidden")
        await click(browser, ".contact-toggle")
        assert await browser.js("return getComputedStyle(document.querySelector('.conv-main'))"
                                ".display") == "none"
    await browser.wait("const n = document.querySelector('.contact-name');"
                       "return n && n.innerText === 'Unknown sender'", what="the panel")
    assert "(202) 555-0177" in await browser.text(".contact-who")
    assert "Opted in" in await browser.text(".contact-panel")

    # Name the sender in place: the header and the list follow.
    await browser.js("const i = document.querySelectorAll('.name-form input');"
                     "i[0].value = 'Dana'; i[1].value = 'Ng';"
                     "document.querySelector('.name-form button[type=submit]').click()")
    await browser.wait("return document.querySelector('.contact-name').innerText === 'Dana Ng'"
                       " && document.querySelector('.conv-head h2').innerText === 'Dana Ng'",
                       what="the new name")
    assert await browser.wait("const r = document.querySelector('.conv-row');"
                              "return r && r.innerText.includes('Dana Ng')", what="list row")

    # Assign to a colleague from the full list of staff.
    options = await browser.js("return [...document.querySelectorAll('.contact-panel select"
                               " option')].map((o) => o.textContent)")
    assert options == ["Unassigned", "Me (Kim Staff)", "Sam Lee"]
    # The header's select learns the names too (only owners may list users).
    await browser.wait("return [...document.querySelectorAll('.conv-head select option')]"
                       ".some((o) => o.textContent === 'Sam Lee')", what="header assignees")
    await browser.js("const s = document.querySelector('.contact-panel select');"
                     "s.value = s.options[2].value; s.dispatchEvent(new Event('change'))")
    await browser.wait("return document.getElementById('announcer').textContent"
                       " === 'Assignment saved.'", what="assigned")
    _, conv, _ = await api.get(f"{API}/conversations/{conv_id}", token=owner["access_token"])
    assert conv["data"]["assigned_to"] == owner["user_id"]

    # A note of our own, then one from another staff member arrives live.
    await browser.type(".note-form textarea", "Retreat questions go to Pastor Sam.")
    await click(browser, ".note-form button[type=submit]")
    await browser.wait("return document.querySelectorAll('.note').length === 1", what="note")
    status, _, _ = await api.post(f"{API}/conversations/{conv_id}/notes",
                                  json={"body": "Sam will call her Monday."},
                                  token=owner["access_token"])
    assert status == 201
    notes = await browser.wait("const n = document.querySelectorAll('.note');"
                               "return n.length === 2 && [...n].map((x) => x.innerText)",
                               what="the other staff's note, live")
    assert notes[0].startswith("Sam will call her Monday.") and "Sam Lee" in notes[0]
    assert "Kim Staff" in notes[1]
    await assert_labelled(browser)
    await assert_contrast(browser)
    await assert_accessible(browser, f"the contact panel at {size[0]} px")
    await browser.screenshot(f"contact-panel-{size[0]}")

    # A STOP arrives: opt-in state and the consent history follow live.
    await text_in(deps, number, phone, "STOP")
    history = await browser.wait("const c = document.querySelector('.consent');"
                                 "return c && c.innerText", what="the consent history")
    assert history.startswith("Opted out · texted STOP")
    assert "Opted out" in await browser.text(".contact-panel .badge.optout")
    assert await browser.js("return document.documentElement.scrollWidth") <= size[0]
    if size != DESKTOP:
        await click(browser, ".contact-toggle")
        assert await browser.js("return document.querySelector('.contact-panel').hidden")
    assert severe(await browser.console()) == []
