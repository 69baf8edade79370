"""The staff web app in a real headless chromium: sign in, live state, the inbox, phones.

Kept short on purpose (one browser for the session, a few page loads per test): the whole
file runs in well under a minute.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any, Iterator

import pytest

from server.sms.segments import segment_info
from tests.carriers.webhook_kit import HANDSET, OURS
from tests.factories import add_user, register
from tests.webapp.browser import PHONE, DESKTOP, Browser, ensure_installed, launch
from tests.workers.bulk import sql


@pytest.fixture(scope="session")
def chrome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    ensure_installed()
    driver = launch(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture
def browser(chrome: Any, api: Any, base_url: str, tmp_path: pathlib.Path) -> Browser:
    shots = pathlib.Path(os.environ.get("YWM_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    chrome.delete_all_cookies()  # cookies ignore ports: a previous test's server set them
    chrome.set_window_size(*DESKTOP)
    chrome.get_log("browser")  # drop what earlier tests logged
    return Browser(chrome, base_url, shots)


def shots_dir(browser: Browser) -> pathlib.Path:
    return browser.shots


def severe(entries: list[dict[str, Any]]) -> list[str]:
    """Script errors and CSP refusals; an HTTP error status is the API answering, not a bug."""
    return [e["message"] for e in entries
            if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]]


UNLABELLED = """
return [...document.querySelectorAll('input, select, textarea, button')]
  .filter((el) => el.type !== 'hidden' && el.checkVisibility())
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 120));
"""


LOW_CONTRAST = """
const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const background = (el) => {
  for (; el; el = el.parentElement) {
    const c = rgb(getComputedStyle(el).backgroundColor);
    if (c.length === 3 || c[3] > 0) return c.slice(0, 3);
  }
  return [255, 255, 255];
};
const bad = [];
for (const el of document.querySelectorAll('body *')) {
  if (!el.checkVisibility() || el.closest('[disabled], .visually-hidden, .flash')) continue;
  if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
  const style = getComputedStyle(el);
  const a = lum(rgb(style.color)), b = lum(background(el));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  const large = parseFloat(style.fontSize) >= 24 ||
    (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
  if (ratio < (large ? 3 : 4.5)) bad.push(`${el.className || el.tagName}: ${ratio.toFixed(2)}`);
}
return bad;
"""


async def assert_contrast(browser: Browser) -> None:
    """WCAG AA: 4.5:1 for text, 3:1 for large text, against the painted background."""
    assert await browser.js(LOW_CONTRAST) == []


async def assert_labelled(browser: Browser) -> None:
    """Every visible control has a label a screen reader can read."""
    assert await browser.js(UNLABELLED) == []


async def sign_in(browser: Browser, email: str, password: str) -> None:
    await browser.open("/")
    await browser.wait("return document.querySelector('#signin-email')", what="sign-in form")
    await browser.type("#signin-email", email)
    await browser.type("#signin-password", password)
    await browser.click("form button[type=submit]")


@pytest.mark.gen_test(timeout=60)
async def test_sign_in_shows_plain_errors_then_the_live_inbox(browser: Browser, api: Any) -> None:
    owner = await register(api, church_name="Grace Chapel", name="Pat Jones")
    await sign_in(browser, owner["email"], "wrong password")
    error = await browser.wait("const e = document.querySelector('.error-text');"
                               "return e && !e.hidden && e.innerText", what="sign-in error")
    assert "{" not in error and "error" not in error.lower().split()[:1]
    assert len(error) > 10  # the API's sentence, not a code

    await browser.type("#signin-password", owner["password"])
    await browser.click("form button[type=submit]")
    await browser.wait("return document.querySelector('.conn[data-state=live]')",
                       what="the stream to go live")
    assert await browser.text(".topbar .church") == "Grace Chapel"
    assert "Pat Jones" in await browser.text(".topbar .user")
    assert await browser.js("return document.title") == "Inbox · YWMessaging"
    await browser.screenshot("inbox-desktop")
    # Keyboard focus is visible: Tab from the search box lands on a filter with an outline.
    await browser.keys("input[type=search]", "\ue004")
    focus = await browser.js("const s = getComputedStyle(document.activeElement);"
                             "return [document.activeElement.innerText, s.outlineStyle,"
                             " parseFloat(s.outlineWidth)]")
    assert focus[0] == "All" and focus[1] != "none" and focus[2] >= 2
    await browser.size(*PHONE)
    # At phone width the page must not scroll sideways.
    assert await browser.js("return document.documentElement.scrollWidth") <= PHONE[0]
    await browser.screenshot("inbox-phone")
    assert severe(await browser.console()) == []

    await browser.click(".topbar .user button")
    await browser.wait("return document.querySelector('#signin-email')", what="signed out")
    status = await browser.js_async(
        "const done = arguments[0];"
        "fetch('/api/v1/auth/me', {credentials: 'same-origin'}).then((r) => done(r.status));")
    assert status == 401  # sign out ended the session, not just the page

    # Staff see only what their role may use; a hand-typed admin URL falls back to the inbox.
    staff = await add_user(api, owner["access_token"], "staff", name="Kim Staff")
    await browser.open("/#/settings")
    await browser.wait("return document.querySelector('#signin-email')", what="sign-in form")
    await browser.type("#signin-email", staff["email"])
    await browser.type("#signin-password", staff["password"])
    await browser.click("form button[type=submit]")
    nav = await browser.wait("const n = document.querySelector('nav.nav');"
                             "return n && n.innerText", what="the staff navigation")
    links = nav.split("\n")
    assert links[0] == "Inbox" and {"Scheduled", "Members & groups", "Numbers"} <= set(links)
    assert not {"Send to a group", "Settings"} & set(links)  # admin and owner screens
    assert await browser.js("return document.querySelector('.inbox') !== null")


@pytest.mark.gen_test(timeout=60)
async def test_segment_counter_matches_the_server(browser: Browser) -> None:
    await browser.open("/")
    texts = ["", "Hello", "a" * 160, "a" * 161, "[" * 81, "a" * 152 + "€" + "a" * 10,
             "\U0001F600" * 35, "\U0001F600" * 36, "a" * 70 + "\u2019", "\U0001F600" * 67,
             "e\u0301" * 40, "\U0001F1FA\U0001F1F8" * 20, "Grüße aus Åland ¿Ñ?"]
    counted = await browser.js_async(
        "const [texts, done] = arguments;"
        "const url = document.querySelector('script[type=module]').src"
        "  .replace(/app\\.js$/, 'segments.js');"
        "import(url).then((m) => done(texts.map((t) => {"
        "  const i = m.segmentInfo(t); return [i.encoding, i.segments]; })));", texts)
    assert [tuple(c) for c in counted] == [tuple(segment_info(t)) for t in texts]
    label = await browser.js_async(
        "const done = arguments[0];"
        "const url = document.querySelector('script[type=module]').src"
        "  .replace(/app\\.js$/, 'segments.js');"
        "import(url).then((m) => done([m.counterText('a'.repeat(143)),"
        "  m.counterText('Hi \\u{1F600}')]));")
    assert label[0] == "143 / 160 · 1 segment"
    assert label[1].startswith("UCS-2 · 70 per segment")


async def seed_church(api: Any) -> dict[str, Any]:
    """A church with a number, two groups and three members (one opted out)."""
    owner = await register(api, church_name="Hope Church", name="Sam Lee")
    api.token = owner["access_token"]
    status, body, _ = await api.post("/api/v1/numbers", json={
        "phone": OURS, "provider": "telnyx", "mps": 5})
    assert status == 201, body
    groups = {}
    for name in ("Choir", "Youth"):
        status, body, _ = await api.post("/api/v1/groups", json={"name": name})
        assert status == 201, body
        groups[name] = body["data"]["id"]
    people = [("Ada", "Moss", "+12025550101", True), ("Ben", "Oaks", "+12025550102", True),
              ("Cy", "Pine", "+12025550103", False)]
    ids = []
    for first, last, phone, opted_in in people:
        status, body, _ = await api.post("/api/v1/members", json={
            "first_name": first, "last_name": last, "phone": phone, "opt_in_sms": opted_in})
        assert status == 201, body
        ids.append(body["data"]["id"])
    status, body, _ = await api.post(f"/api/v1/groups/{groups['Choir']}/members",
                                     json={"member_ids": ids})
    assert status in (200, 201, 204), body
    api.token = None
    return owner


@pytest.mark.gen_test(timeout=60)
async def test_members_groups_send_and_settings_screens(browser: Browser, api: Any,
                                                        sim: Any, worker: Any) -> None:
    owner = await seed_church(api)
    await sign_in(browser, owner["email"], owner["password"])
    await browser.wait("return document.querySelector('.conn[data-state=live]')", what="live")

    await browser.open("/#/members")
    rows = await browser.wait("const r = document.querySelectorAll('main tbody tr');"
                              "return r.length === 3 && [...r].map((x) => x.innerText)",
                              what="three member rows")
    assert any("(202) 555-0103" in r and "Opted out" in r for r in rows)
    await assert_labelled(browser)
    await assert_contrast(browser)
    await browser.screenshot("members-desktop")

    # Add a member through the dialog: a bad phone shows the API's sentence, not JSON.
    await browser.js("[...document.querySelectorAll('main button')]"
                     ".find((b) => b.innerText === 'Add member').click()")
    await browser.wait("return document.querySelector('dialog[open] input')", what="dialog")
    await assert_labelled(browser)
    await browser.type("dialog[open] input[type=tel]", "12")
    await browser.js("const i = document.querySelectorAll('dialog[open] input');"
                     "i[0].value = 'Dee'; i[1].value = 'Ray';"
                     "document.querySelector('dialog[open] button[type=submit]').click()")
    problem = await browser.wait("const e = document.querySelector('dialog[open] .error-text');"
                                 "return e && !e.hidden && e.innerText", what="phone error")
    assert problem == "Phone: This is not a valid phone number."
    await browser.type("dialog[open] input[type=tel]", "(202) 555-0104")
    await browser.click("dialog[open] button[type=submit]")
    await browser.wait("return !document.querySelector('dialog[open]') &&"
                       " document.querySelectorAll('main tbody tr').length === 4",
                       what="the new member in the table")

    # CSV import: the summary counts rows and names the bad row by number.
    csv = shots_dir(browser) / "members.csv"
    csv.write_text("first_name,last_name,phone\nEve,Stone,2025550105\n"
                   "Fay,Wood,+12025550106\nGus,Bad,12\n")
    await browser.js("document.querySelector('details.card').open = true")
    await browser.keys("input[type=file]", str(csv))
    await browser.js("document.querySelector('input[type=file]').form"
                     ".querySelector('button[type=submit]').click()")
    summary = await browser.wait("const n = document.querySelector('details.card .notice');"
                                 "return n && n.parentElement.innerText", what="import summary")
    assert summary.startswith("2 members created · 0 updated · 1 skipped · 1 error")
    assert "\n4\tphone\t" in summary  # the header is row 1
    await browser.wait("return document.querySelectorAll('main .table-wrap')[1]"
                       ".querySelectorAll('tbody tr').length === 6", what="table reloaded")

    await browser.open("/#/groups")
    groups = await browser.wait("const r = document.querySelectorAll('main tbody tr');"
                                "return r.length === 2 && [...r].map((x) => x.innerText)",
                                what="two group rows")
    assert any(r.startswith("Choir") and "\t3\t" in r for r in groups)

    await browser.open("/#/send")
    await browser.wait("return document.querySelectorAll('.group-pick input').length === 2",
                       what="group checkboxes")
    assert "3 members" in await browser.text(".group-pick")
    await browser.js("[...document.querySelectorAll('.group-pick label')]"
                     ".find((l) => l.innerText.startsWith('Choir')).querySelector('input').click()")
    await browser.type("form.card textarea", "Choir practice moved to 7pm 🎶")
    preview = await browser.wait(
        "const t = document.querySelector('.preview-line').innerText;"
        "return t.includes('1 opted out') && t", what="the preview with opt-outs")
    assert preview.startswith("2 recipients (1 opted out are skipped) · 1 segment each · ≈ $")
    assert "UCS-2 · 70 per segment" in await browser.text(".counter")
    await assert_labelled(browser)
    await browser.screenshot("send-desktop")
    await browser.click("form.card button[type=submit]")
    dialog = await browser.wait("const d = document.querySelector('dialog[open]');"
                                "return d && d.innerText", what="the confirm dialog")
    assert "2 recipients" in dialog and "Choir" in dialog
    await browser.js("[...document.querySelectorAll('dialog[open] button')]"
                     ".find((b) => b.innerText.startsWith('Send to')).click()")
    await browser.wait("return location.hash.startsWith('#/send/') &&"
                       " document.querySelector('[data-count=queued]')", what="the progress view")
    assert (await browser.text("main h1")) in ("Sending to a group", "Sent to a group")
    # The worker sends through the simulator; receipts move the counts live.
    await browser.wait("return document.querySelector('[data-count=delivered] strong')"
                       ".innerText === '2'", timeout=20, what="2 delivered")
    await browser.wait("return document.querySelector('main h1').innerText === 'Sent to a group'",
                       what="the send to complete")
    await browser.wait("return document.querySelector('.broadcast-state').dataset.outcome"
                       " === 'completed'", what="the outcome")
    assert await browser.text(".broadcast-state") == "Completed"
    await browser.screenshot("send-progress")

    # Undelivered texts: the failed list names each recipient with the carrier's reason.
    sim.config.update({"delivered_ratio": 0.0})
    await browser.click("a[href='#/send']")
    await browser.wait("return document.querySelectorAll('.group-pick input').length === 2",
                       what="group checkboxes")
    await browser.js("[...document.querySelectorAll('.group-pick label')]"
                     ".find((l) => l.innerText.startsWith('Choir')).querySelector('input').click()")
    await browser.type("form.card textarea", "Choir is cancelled tonight")
    await browser.click("form.card button[type=submit]")
    await browser.wait("return document.querySelector('dialog[open]')", what="confirm")
    await browser.js("[...document.querySelectorAll('dialog[open] button')]"
                     ".find((b) => b.innerText.startsWith('Send to')).click()")
    failed = await browser.wait(
        "const rows = [...document.querySelectorAll('main section:last-child tbody tr')];"
        "return rows.length === 2 && rows.map((r) => r.innerText)", timeout=20,
        what="two failed recipients")
    assert sorted(row.split("\t")[0] for row in failed) == ["Ada Moss", "Ben Oaks"]
    # Plain words for the reason; the carrier's code and words stay in the tooltip.
    assert all("(202) 555-010" in row and row.split("\t")[-1] ==
               "Their phone could not be reached." for row in failed), failed
    assert await browser.js("return [...document.querySelectorAll('main td.reason')]"
                            ".map((td) => td.title)") == ["40008: Undeliverable"] * 2
    assert await browser.text("[data-count=failed] strong") == "2"
    # Every recipient failed: the send says so, not "Completed".
    await browser.wait("const s = document.querySelector('.broadcast-state');"
                       "return s && s.dataset.outcome === 'failed'", timeout=20,
                       what="the send to end failed")
    assert await browser.text(".broadcast-state") == "Failed"
    assert await browser.text("main h1") == "Could not send to a group"
    await browser.screenshot("send-failed")

    # Later: the date field appears only then, and the send is accepted as scheduled.
    await browser.click("a[href='#/send']")
    await browser.wait("return document.querySelectorAll('.group-pick input').length === 2 &&"
                       " document.querySelector('.card ul li a')", what="recent sends")
    assert await browser.js("return document.querySelector('input[type=datetime-local]')"
                            ".checkVisibility()") is False
    await browser.js("[...document.querySelectorAll('.group-pick label')]"
                     ".find((l) => l.innerText.startsWith('Choir')).querySelector('input').click();"
                     "document.querySelector('input[value=later]').click();"
                     "const d = new Date(Date.now() + 2 * 86400000);"
                     "const pad = (n) => String(n).padStart(2, '0');"
                     "document.querySelector('input[type=datetime-local]').value ="
                     " `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T09:30`;")
    await browser.type("form.card textarea", "Sunday picnic at noon")
    await browser.click("form.card button[type=submit]")
    await browser.wait("return document.querySelector('dialog[open]')", what="confirm")
    assert "Schedule this text?" in await browser.text("dialog[open]")
    await browser.js("[...document.querySelectorAll('dialog[open] button')]"
                     ".find((b) => b.innerText === 'Schedule').click()")
    await browser.wait("return document.querySelector('main h1') &&"
                       " document.querySelector('main h1').innerText === 'Scheduled send'",
                       what="the scheduled send")

    await browser.open("/#/settings")
    await browser.wait("return [...document.querySelectorAll('main input')]"
                       ".some((i) => i.value === 'Hope Church')", what="church settings")
    assert await browser.js("return Boolean(document.querySelector('main a[href=\"#/numbers\"]'))")
    await browser.wait("const t = document.querySelector('main table');"
                       "return t && t.innerText.includes('Sam Lee')", what="the staff users")
    await assert_labelled(browser)
    await browser.type("main form textarea", "Hope Church texts. Call 202-555-0100.")
    await browser.js("document.querySelector('main form button[type=submit]').click()")
    await browser.wait("return document.getElementById('announcer').textContent"
                       " === 'Church settings saved.'", what="saved")
    _, church, _ = await api.get("/api/v1/church", token=owner["access_token"])
    assert church["data"]["help_text"] == "Hope Church texts. Call 202-555-0100."
    await browser.screenshot("settings-desktop")
    await browser.size(*PHONE)
    assert await browser.js("return document.documentElement.scrollWidth") <= PHONE[0]
    await browser.screenshot("settings-phone")
    assert severe(await browser.console()) == []


@pytest.fixture
def sim(io_loop: Any, deps: Any, http_server: Any, base_url: str) -> Iterator[Any]:
    """The carrier simulator in-process, posting signed webhooks to the test server."""
    from server.carriers.simulator import start_simulator
    value = io_loop.run_sync(lambda: start_simulator(
        deps.settings, callback_base=base_url, public_base=deps.settings.public_url,
        status_delay_ms=100, webhook_retry_delay_ms=10, seed=11))
    # The server asks this simulator whether the platform's account holds a number.
    value.config.account_numbers.append(OURS)
    before, deps.settings = deps.settings, value.settings_for_clients(deps.settings)
    yield value
    deps.settings = before
    io_loop.run_sync(value.stop)


@pytest.fixture
def worker(sim: Any, deps: Any, base_url: str) -> Iterator[Any]:
    """A real `ywm worker` process sending through the simulator."""
    from server.platform import queue
    from tests.workers import procs
    queue.configure(deps.settings)  # the in-process server enqueues on this run's queue
    proc = procs.start_worker(procs.service_env(deps.settings, sim.url, base_url), threads=2)
    yield proc
    procs.kill(proc)  # nothing to drain: every send's state is in PostgreSQL


async def inject(sim: Any, text: str) -> None:
    from server.carriers.simulator.carriers import inject_inbound
    result = await inject_inbound(sim, "telnyx", HANDSET, OURS, text, [])
    assert result["status"] == 200, result


@pytest.mark.gen_test(timeout=60)
async def test_inbound_text_arrives_live_and_the_reply_is_delivered(
        browser: Browser, api: Any, sim: Any, worker: Any, deps: Any) -> None:
    owner = await register(api, church_name="Grace Chapel", name="Pat Jones")
    status, body, _ = await api.post("/api/v1/numbers", json={
        "phone": OURS, "provider": "telnyx", "mps": 10}, token=owner["access_token"])
    assert status == 201, body
    await sign_in(browser, owner["email"], owner["password"])
    await browser.wait("return document.querySelector('.conn[data-state=live]')", what="live")

    await inject(sim, "Is choir on tonight?")
    row = await browser.wait(
        "const r = document.querySelector('.conv-row');"
        "return r && r.innerText.includes('Is choir on tonight?') && r.innerText",
        what="the new conversation row")
    assert "(415) 555-2671" in row and "1" in row.split()
    # The unread list loaded at sign-in must not overwrite the newer live count.
    await browser.wait("return document.title === '(1) Inbox · YWMessaging'",
                       what="the unread count in the tab title")
    assert "New text from" in await browser.wait(
        "return document.getElementById('announcer').textContent", what="announcement")

    await browser.click(".conv-row")
    await browser.wait("return document.querySelector('.bubble.inbound')", what="the thread")
    await browser.wait("return document.title === 'Inbox · YWMessaging'", what="read")
    await browser.type(".compose textarea", "Yes, 7pm in the chapel")
    assert await browser.text(".compose .counter") == "22 / 160 · 1 segment"
    await browser.keys(".compose textarea", "\ue007")  # Enter sends
    await browser.wait("return document.querySelector('.bubble.outbound')", what="the reply")
    # The worker sends it through the simulator; its receipt arrives as message.status.
    await browser.wait("const s = document.querySelector('.meta.outbound [data-status]');"
                       "return s && s.dataset.status === 'delivered'", timeout=20,
                       what="the reply to reach delivered")
    assert (await browser.text(".meta.outbound")).endswith("· Delivered")
    assert await browser.js("return document.querySelector('.compose textarea').value") == ""
    await assert_labelled(browser)
    await assert_contrast(browser)
    await browser.screenshot("conversation-desktop")

    # Offline for a moment: texts that arrive meanwhile are replayed on resume.
    await browser.js("window.ywm.stream.stop()")
    await inject(sim, "Thanks!")
    await browser.js("window.ywm.stream.start()")
    caught = await browser.wait("const c = document.querySelector('.conn');"
                                "return c.dataset.state === 'caught_up' && c.innerText",
                                what="caught up")
    assert "Caught up · 1 new text" in caught
    bubbles = await browser.js("return [...document.querySelectorAll('.bubble')]"
                               ".map((b) => b.textContent)")
    assert bubbles == ["(415) 555-2671: Is choir on tonight?", "You: Yes, 7pm in the chapel",
                       "(415) 555-2671: Thanks!"]  # each once, in order

    # A dropped socket reconnects by itself and says so; an id the server cannot replay
    # asks for a reload, which the Reload button does by REST.
    await browser.js("window.states = []; new MutationObserver(() => window.states.push("
                     "document.querySelector('.conn').dataset.state)).observe("
                     "document.querySelector('.conn'), {attributes: true});"
                     "window.ywm.stream.socket.close()")
    await browser.wait("return window.states.includes('reconnecting') &&"
                       " document.querySelector('.conn').dataset.state === 'caught_up'",
                       what="reconnect")
    assert "Caught up · 0 new texts" in await browser.text(".conn")
    await browser.js("window.ywm.stream.lastEventId = '999999999';"
                     "window.ywm.stream.socket.close()")
    await browser.wait("return document.querySelector('.conn').dataset.state === 'reload'",
                       what="reload needed")
    assert await browser.text(".conn") == "Reload needed"
    await browser.click(".topbar button.link")
    await browser.wait("return document.querySelector('.conn').dataset.state === 'live'",
                       what="live after the reload")

    # A reply the carrier cannot deliver shows "Failed" with the carrier's reason.
    sim.config.update({"delivered_ratio": 0.0})
    await browser.type(".compose textarea", "Are you still coming?")
    await browser.click(".compose button[type=submit]")
    failed = await browser.wait(
        "const s = [...document.querySelectorAll('.meta.outbound [data-status]')].pop();"
        "return s && s.dataset.status === 'failed' && s.innerText", timeout=20,
        what="the reply to fail")
    assert failed == "Failed: Their phone could not be reached."
    assert await browser.js("return [...document.querySelectorAll('.meta.outbound"
                            " [data-status]')].pop().title") == "40008: Undeliverable"
    sim.config.update({"delivered_ratio": 1.0})

    # After a resume the thread reads its message states again: a state no replayed
    # event carried (changed here behind the stream's back) shows without a reload.
    await browser.js("window.ywm.stream.stop()")
    sql(deps.settings, "UPDATE conversation_messages SET status = 'delivered', error = NULL"
                       " WHERE body = 'Are you still coming?'")
    await browser.js("window.ywm.stream.start()")
    await browser.wait("const s = [...document.querySelectorAll('.meta.outbound"
                       " [data-status]')].pop(); return s && s.dataset.status === 'delivered'",
                       what="the re-read state after the resume")

    # STOP: the row gets the opted-out badge and the compose box explains why it is gone.
    await inject(sim, "STOP")
    blocked = await browser.wait("const b = document.querySelector('.compose-blocked');"
                                 "return b && b.innerText", what="compose disabled")
    assert "opted out" in blocked and "START" in blocked
    assert await browser.js("return !document.querySelector('.compose textarea')")
    assert "Opted out" in await browser.text(".conv-row")

    await browser.size(*PHONE)
    assert await browser.js("return getComputedStyle(document.querySelector('.list-pane'))"
                            ".display") == "none"
    await browser.screenshot("conversation-phone")
    await browser.click(".conv-head a.back")
    await browser.wait("return getComputedStyle(document.querySelector('.list-pane'))"
                       ".display !== 'none'", what="the list view on a phone")
    await browser.screenshot("inbox-phone-list")
    assert severe(await browser.console()) == []
