"""Every registered screen (tests/webapp/screens.py) at 1280 px and 390 px: axe-core finds
no serious or critical violation, the page never scrolls sideways, the console stays
clean; with YWM_SCREENSHOT_DIR set each view is saved (python -m tests.webapp.screenshots
does that for docs/webapp.md)."""
from __future__ import annotations

import os
from typing import Any

import pytest

from tests.webapp.a11y import assert_accessible
from tests.webapp.browser import Browser
from tests.webapp.screens import SCREENS, WIDTHS, Screen, seed_church
from tests.webapp.test_browser import (browser, chrome, severe, sign_in, sim,  # noqa: F401
                                       worker)

SETTLED = ("const done = arguments[0];"
           "requestAnimationFrame(() => requestAnimationFrame(() => done(true)));")


async def visit(browser: Browser, screen: Screen, seeded: dict[str, Any]) -> list[str]:
    """Open one screen, check it at each width; returns what went wrong."""
    await browser.size(*WIDTHS["desktop"])
    await browser.open(screen.path.format(**seeded))
    await browser.wait(f"return Boolean({screen.ready})", timeout=20, what=screen.name)
    if screen.then:
        await browser.js(screen.then)
        await browser.wait("return document.querySelector('dialog[open]') ||"
                           " !document.querySelector('dialog')", what=f"{screen.name}: then")
    problems = []
    for width_name, size in WIDTHS.items():
        await browser.size(*size)
        await browser.js_async(SETTLED)
        try:
            await assert_accessible(browser, f"{screen.name} at {size[0]} px")
        except AssertionError as exc:
            problems.append(str(exc))
        wide = await browser.js("return document.documentElement.scrollWidth")
        if wide > size[0]:
            problems.append(f"{screen.name} at {size[0]} px scrolls sideways ({wide} px)")
        if os.environ.get("YWM_SCREENSHOT_DIR"):
            await browser.screenshot(f"{screen.name}-{width_name}")
    # A hash route does not reload the page: close what `then` opened.
    await browser.js("document.querySelectorAll('dialog[open]').forEach((d) => d.close())")
    return problems


@pytest.mark.gen_test(timeout=240)
async def test_every_screen_passes_axe_at_both_widths(browser: Browser, api: Any, deps: Any,
                                                      sim: Any, worker: Any) -> None:
    seeded = await seed_church(api, deps, sim)
    # The sweep shows finished states: the reply delivered, the group send completed.
    await browser.open("/")
    problems: list[str] = []
    signed_in_as = None
    for screen in SCREENS:
        if screen.role != signed_in_as:
            await browser.call(browser.driver.delete_all_cookies)
            if screen.role:
                user = seeded[screen.role]
                await sign_in(browser, user["email"], user["password"])
                await browser.wait("return document.querySelector('.conn[data-state=live]')",
                                   what="live")
            signed_in_as = screen.role
        problems += await visit(browser, screen, seeded)
    assert problems == [], "\n".join(problems)
    assert severe(await browser.console()) == []

    # The check itself bites: an unlabelled field is a critical violation.
    await browser.js("document.querySelector('main').append(document.createElement('input'))")
    with pytest.raises(AssertionError, match="critical label"):
        await assert_accessible(browser, "a page with an unlabelled input")
