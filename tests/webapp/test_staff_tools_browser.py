"""Issue 15 items 6-8 in a real headless chromium, at 1280 px and 390 px: saved replies with
merge fields (in a reply and in a group send's preview), finding members by the last four
digits of their phone with the total count and member cards on a phone, and desktop
notifications / a sound for texts that arrive while the tab is hidden."""
from __future__ import annotations

from typing import Any

import pytest

from tests.carriers.webhook_kit import OURS
from tests.factories import register
from tests.webapp.a11y import assert_accessible
from tests.webapp.browser import DESKTOP, Browser
from tests.webapp.test_browser import (assert_contrast, assert_labelled, browser, chrome,
                                       inject, severe, sign_in, sim)

__all__ = ["browser", "chrome", "sim"]
API = "/api/v1"
PHONE_390 = (390, 844)
WIDTHS = [pytest.param(DESKTOP, id="1280"), pytest.param(PHONE_390, id="390")]
TEMPLATE = "Hi {first_name|friend}, welcome to {church_name}!"


async def _church(api: Any, number: bool = True) -> dict[str, Any]:
    """A church (with the simulator's number), three members, two of them in a Choir group."""
    owner = await register(api, church_name="Hope Church", name="Sam Lee")
    token = owner["access_token"]
    if number:
        status, body, _ = await api.post(f"{API}/numbers", json={
            "phone": OURS, "provider": "telnyx", "mps": 10}, token=token)
        assert status == 201, body
    status, group, _ = await api.post(f"{API}/groups", json={"name": "Choir"}, token=token)
    assert status == 201, group
    ids = []
    for first, last, phone in (("Ada", "Moss", "+12025550101"),
                               ("Bartholomew", "Featherstonehaugh", "+12025550102"),
                               ("Cy", "Pine", "+12025550103")):
        status, body, _ = await api.post(f"{API}/members", json={
            "first_name": first, "last_name": last, "phone": phone}, token=token)
        assert status == 201, body
        ids.append(body["data"]["id"])
    status, body, _ = await api.post(f"{API}/groups/{group['data']['id']}/members",
                                     json={"member_ids": ids[:2]}, token=token)
    assert status in (200, 201, 204), body
    return owner


async def _live(browser: Browser) -> None:
    await browser.wait("return document.querySelector('.conn[data-state=live]')", what="live")


async def _fits(browser: Browser, width: int) -> None:
    assert await browser.js("return document.documentElement.scrollWidth") <= width


@pytest.mark.parametrize("size", WIDTHS)
@pytest.mark.gen_test(timeout=120)
async def test_saved_replies_and_merge_fields(browser: Browser, api: Any, sim: Any,
                                              size: Any) -> None:
    owner = await _church(api)
    await browser.size(*size)
    await sign_in(browser, owner["email"], owner["password"])
    await _live(browser)

    # Saved replies: an unknown field is refused with its name; a good one is previewed.
    await browser.open("/#/templates")
    await browser.wait("return [...document.querySelectorAll('main button')]"
                       ".some((b) => b.innerText === 'New saved reply')", what="the screen")
    await browser.js("[...document.querySelectorAll('main button')]"
                     ".find((b) => b.innerText === 'New saved reply').click()")
    await browser.wait("return document.querySelector('dialog[open] textarea')", what="dialog")
    await browser.type("dialog[open] input", "Welcome")
    await browser.type("dialog[open] textarea", "Hi {nickname}")
    assert "{nickname}" in await browser.text("dialog[open] .merge-preview")
    await browser.click("dialog[open] button[type=submit]")
    problem = await browser.wait("const e = document.querySelector('dialog[open] .error-text');"
                                 "return e && !e.hidden && e.innerText", what="the 422")
    assert "{nickname}" in problem and "{" not in problem.split("{nickname}")[0]
    await browser.type("dialog[open] textarea", TEMPLATE)
    assert await browser.text("dialog[open] .merge-preview") == \
        "For Ada: “Hi Ada, welcome to Hope Church!”"
    await assert_labelled(browser)
    await assert_accessible(browser, "saved reply dialog")
    await browser.click("dialog[open] button[type=submit]")
    card = await browser.wait("const c = document.querySelector('.template');"
                              "return !document.querySelector('dialog[open]') && c && c.innerText",
                              what="the saved reply")
    assert "Welcome" in card and TEMPLATE in card
    assert "For Ada Moss: “Hi Ada, welcome to Hope Church!”" in card
    await assert_contrast(browser)
    await assert_accessible(browser, "saved replies")
    await _fits(browser, size[0])
    await browser.screenshot(f"templates-{size[0]}")

    # A reply: the saved reply fills the box, the preview and the counter show Ada's text,
    # and the thread shows what was sent, merged.
    await inject(sim, "Hello, this is Ada")
    _, convs, _ = await api.get(f"{API}/conversations", token=owner["access_token"])
    conversation = convs["data"][0]
    status, _, _ = await api.patch(f"{API}/members/{conversation['member']['id']}",
                                   json={"first_name": "Ada", "last_name": "Lovelace"},
                                   token=owner["access_token"])
    assert status == 200
    await browser.open(f"/#/inbox/{conversation['id']}")
    await browser.wait("return document.querySelector('.compose .compose-template option + option')",
                       what="the saved replies in the picker")
    await browser.js("const s = document.querySelector('.compose .compose-template');"
                     "s.value = [...s.options].find((o) => o.text === 'Welcome').value;"
                     "s.dispatchEvent(new Event('change'));")
    assert await browser.js("return document.querySelector('.compose textarea').value") == TEMPLATE
    merged = "Hi Ada, welcome to Hope Church!"
    assert await browser.text(".compose .merge-preview") == f"Sends as: “{merged}”"
    assert await browser.text(".compose .counter") == f"{len(merged)} / 160 · 1 segment"
    await assert_labelled(browser)
    await assert_accessible(browser, "reply with a saved reply")
    await browser.screenshot(f"reply-merge-{size[0]}")
    await browser.keys(".compose textarea", "\ue007")
    await browser.wait("return [...document.querySelectorAll('.bubble.outbound')]"
                       ".some((b) => b.textContent.endsWith(arguments[0]))", merged,
                       what="the merged reply in the thread")

    # A group send: each person's own text, and the estimate uses the longest one.
    await browser.open("/#/send")
    await browser.wait("return document.querySelectorAll('.group-pick input').length === 1",
                       what="the Choir checkbox")
    await browser.click(".group-pick input")
    await browser.js("const s = document.querySelector('form.card .compose-field');"
                     "s.value = 'first_name'; s.dispatchEvent(new Event('change'));")
    body = await browser.js("return document.querySelector('form.card textarea').value")
    assert body == "{first_name|friend}"
    await browser.keys("form.card textarea", ", choir is at 7 tonight at {church_name}. "
                       + "Please bring your folder and a friend." * 3)
    samples = await browser.wait("const s = document.querySelectorAll('.merge-samples li');"
                                 "return s.length === 2 && [...s].map((x) => x.innerText)",
                                 what="two recipients' own texts")
    assert samples[0].startswith("Ada Moss: Ada, choir is at 7 tonight at Hope Church.")
    assert samples[1].startswith("Bartholomew Featherstonehaugh: Bartholomew, choir")
    preview = await browser.wait("const t = document.querySelector('.preview-line').innerText;"
                                 "return t.includes('2 segments') && t",
                                 what="the estimate from the longest text")
    assert preview.startswith("2 recipients")
    assert "(longest merged text)" in await browser.text("form.card .counter")
    await assert_labelled(browser)
    await assert_accessible(browser, "group send with merge fields")
    await _fits(browser, size[0])
    await browser.screenshot(f"send-merge-{size[0]}")
    assert severe(await browser.console()) == []


CARD_LAYOUT = """
const rows = [...document.querySelectorAll('main .members-table tbody tr')];
return rows.map((r) => [getComputedStyle(r).display, Math.round(r.getBoundingClientRect().right)]);
"""


@pytest.mark.parametrize("size", WIDTHS)
@pytest.mark.gen_test(timeout=90)
async def test_find_members_by_last_four_with_a_total(browser: Browser, api: Any,
                                                      size: Any) -> None:
    owner = await _church(api, number=False)
    await browser.size(*size)
    await sign_in(browser, owner["email"], owner["password"])
    await _live(browser)
    await browser.open("/#/members")
    await browser.wait("return document.querySelectorAll('main tbody tr').length === 3",
                       what="three members")
    assert await browser.text(".member-total") == "3 members"
    layout = await browser.js(CARD_LAYOUT)
    if size == DESKTOP:
        assert {d for d, _ in layout} == {"table-row"}
    else:  # a card per member, inside the screen: no 1,100 px table to scroll sideways
        assert {d for d, _ in layout} == {"block"} and all(right <= size[0] for _, right in layout)
        assert await browser.js("return getComputedStyle(document.querySelector("
                                "'.members-table thead')).display") == "none"
        assert "(202) 555-010" in await browser.text("main .members-table tbody tr")
        label = await browser.js("return getComputedStyle(document.querySelector("
                                 "'.members-table td[data-label=Phone]'), '::before').content")
        assert label == '"Phone: "'  # each value says what it is, as the header did
    await _fits(browser, size[0])
    await assert_labelled(browser)
    await assert_contrast(browser)
    await assert_accessible(browser, "members")
    await browser.screenshot(f"members-{size[0]}")

    # The last four digits of a phone find its member; the total counts the matches.
    await browser.type("main input[type=search]", "0103")
    rows = await browser.wait("const r = document.querySelectorAll('main tbody tr');"
                              "return r.length === 1 && r[0].innerText", what="one match")
    assert "Cy Pine" in rows and "(202) 555-0103" in rows
    assert await browser.text(".member-total") == "1 member found"
    await browser.type("main input[type=search]", "9999")
    await browser.wait("return document.querySelector('.member-total').innerText"
                       " === '0 members found'", what="no match")
    await browser.screenshot(f"members-search-{size[0]}")
    assert severe(await browser.console()) == []


SPY = """
// Observe notifications: record each one, then construct the real one as the app asked.
window.shown = [];
const Real = window.Notification;
function Spy(title, options) {
  window.shown.push({title, body: options && options.body, tag: options && options.tag});
  return new Real(title, options);
}
Object.defineProperty(Spy, 'permission', {get: () => Real.permission});
Spy.requestPermission = (...args) => Real.requestPermission(...args);
window.Notification = Spy;
"""
HIDE = """
// The tab goes to the background, as far as the page can tell.
Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => arguments[0]});
document.dispatchEvent(new Event('visibilitychange'));
"""
COUNTS = """
const done = arguments[0];
const url = document.querySelector('script[type=module]').src.replace(/app\\.js$/, 'notify.js');
import(url).then((m) => done([m.counts.notifications, m.counts.sounds]));
"""


async def _permission(browser: Browser, setting: str) -> None:
    """Set the site's notification permission through the DevTools protocol."""
    await browser.call(browser.driver.execute_cdp_cmd, "Browser.setPermission", {
        "origin": browser.base_url, "permission": {"name": "notifications"},
        "setting": setting})


@pytest.mark.parametrize("size", WIDTHS)
@pytest.mark.gen_test(timeout=90)
async def test_desktop_notification_and_sound_for_texts_while_hidden(
        browser: Browser, api: Any, sim: Any, size: Any) -> None:
    owner = await _church(api)
    await browser.size(*size)
    await _permission(browser, "granted")
    await sign_in(browser, owner["email"], owner["password"])
    await _live(browser)
    await browser.js(SPY)
    # Off by default: a text while hidden makes no notification and no sound.
    await browser.js(HIDE, "hidden")
    await inject(sim, "First text")
    await browser.wait("return [...document.querySelectorAll('.conv-row')]"
                       ".some((r) => r.innerText.includes('First text'))", what="the text")
    assert await browser.js("return window.shown") == []

    # Turned on from "Alerts" (a click: the only time the permission may be asked).
    await browser.js(HIDE, "visible")
    await browser.click(".alerts-button")
    await browser.wait("return document.querySelector('dialog[open].alerts-dialog')",
                       what="the alerts dialog")
    await assert_labelled(browser)
    await assert_accessible(browser, "alerts dialog")
    await browser.screenshot(f"alerts-{size[0]}")
    await browser.js("[...document.querySelectorAll('dialog[open] label')]"
                     ".find((l) => l.innerText.includes('desktop')).querySelector('input').click()")
    status = await browser.wait("const s = document.querySelector('dialog[open] [role=status]');"
                                "return s && s.innerText", what="the switch to take")
    assert status == "Desktop notifications are on."
    await browser.js("[...document.querySelectorAll('dialog[open] label')]"
                     ".find((l) => l.innerText.includes('sound')).querySelector('input').click()")
    await browser.js("[...document.querySelectorAll('dialog[open] button')]"
                     ".find((b) => b.innerText === 'Done').click()")
    assert await browser.js("return [localStorage.getItem('ywm.alerts.desktop'),"
                            " localStorage.getItem('ywm.alerts.sound')]") == ["on", "on"]

    # Hidden: an inbound text is a notification (who, what) and a sound.
    await browser.js(HIDE, "hidden")
    await inject(sim, "Is choir on tonight?")
    shown = await browser.wait("return window.shown.length === 1 && window.shown",
                               what="the notification")
    assert shown[0]["title"] == "New text from (415) 555-2671"
    assert shown[0]["body"] == "Is choir on tonight?" and shown[0]["tag"]
    assert await browser.js_async(COUNTS) == [1, 1]
    # Visible again: the inbox shows it; no notification, no sound.
    await browser.js(HIDE, "visible")
    await inject(sim, "Thanks!")
    await browser.wait("return [...document.querySelectorAll('.conv-row')]"
                       ".some((r) => r.innerText.includes('Thanks!'))", what="the text")
    assert len(await browser.js("return window.shown")) == 1
    assert await browser.js_async(COUNTS) == [1, 1]

    # A browser that refuses: the switch stays off and says how to allow it.
    await browser.js("localStorage.setItem('ywm.alerts.desktop', 'off')")
    await _permission(browser, "denied")
    await browser.click(".alerts-button")
    await browser.wait("return document.querySelector('dialog[open].alerts-dialog')",
                       what="the alerts dialog")
    assert "blocked" in await browser.text("dialog[open] [role=status]")
    await browser.js("[...document.querySelectorAll('dialog[open] label')]"
                     ".find((l) => l.innerText.includes('desktop')).querySelector('input').click()")
    refused = await browser.wait("const s = document.querySelector('dialog[open] [role=status]');"
                                 "return s && s.innerText.includes('did not allow') && s.innerText",
                                 what="the refusal")
    assert "site settings" in refused
    assert await browser.js("return document.querySelector('dialog[open] input').checked") is False
    await _fits(browser, size[0])
    assert severe(await browser.console()) == []
