"""axe-core in the page: the accessibility check every browser test can call.

`await assert_accessible(browser, "scheduled, edit dialog")` runs axe-core on the current
page (dialogs included) and fails on any violation of impact `serious` or `critical`,
naming the rule, the elements and axe's help text. axe-core comes from the npm registry
as a test fixture (`deploy/local/browser.sh` writes tests/webapp/fixtures/axe.min.js;
`ensure_installed` runs it when the file is missing); it is injected through WebDriver,
so the app's CSP and its no-CDN rule are untouched.
"""
from __future__ import annotations

import functools
from typing import Any

from tests.webapp.browser import AXE, Browser

BLOCKING = ("serious", "critical")
# Rules run: WCAG 2.0/2.1 A and AA plus axe's best practices (landmarks, headings...).
RUN_OPTIONS = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a",
                                                     "wcag21aa", "best-practice"]},
               "resultTypes": ["violations"]}

_RUN = """
const [options, done] = arguments;
axe.run(document, options).then(
  (result) => done(result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    targets: v.nodes.slice(0, 5).map((n) => n.target.join(' ') + ' → ' + n.failureSummary)}))),
  (error) => done([{id: 'axe-error', impact: 'critical', help: String(error), targets: []}]));
"""


@functools.cache
def axe_source() -> str:
    return AXE.read_text(encoding="utf-8")


async def axe_violations(browser: Browser) -> list[dict[str, Any]]:
    """Every axe violation on the current page (any impact)."""
    if not await browser.js("return typeof window.axe === 'object'"):
        await browser.js(axe_source())
    return list(await browser.js_async(_RUN, RUN_OPTIONS))


async def assert_accessible(browser: Browser, what: str = "") -> None:
    """No serious or critical axe violation on the page as it is now."""
    found = [v for v in await axe_violations(browser) if v["impact"] in BLOCKING]
    report = "\n".join(f"- {v['impact']} {v['id']}: {v['help']}\n    " + "\n    ".join(v["targets"])
                       for v in found)
    assert not found, f"axe on {what or await browser.js('return location.hash')}:\n{report}"
