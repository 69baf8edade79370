"""`ywm seed-demo`: an idempotent demo church for development.

Everything goes through the services (accounts, groups, members, numbers), so the demo
data is exactly what the API would have written: encrypted phones, keyed hashes, consent
rows. Running it again finds what exists and adds only what is missing. It refuses to run
with YWM_ENV=production: the demo password is public.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from db.queries import users as user_q
from server.deps import Deps
from server.platform.errors import Conflict
from server.services import accounts, groups, members, numbers

CHURCH_NAME = "Grace Community Church"
OWNER_EMAIL = "demo@ywmessaging.local"
OWNER_NAME = "Pastor Demo"
# Development only (seed refuses production); printed by `ywm seed-demo` and `make run`.
OWNER_PASSWORD = "grace-demo-2026"
# 555-01xx numbers are reserved for fiction; the carrier simulator accepts any number.
DEMO_NUMBER = {"phone": "+12025550100", "provider": "telnyx", "mps": 10}
GROUPS = ("Youth Group", "Worship Team", "Volunteers")
# Texted in through the carrier simulator on the first `make run`, so the inbox opens
# with live conversations (the last sender is not a member yet: it becomes one).
DEMO_TEXTS = (
    ("+12025550111", "Is choir practice still at 7 tonight?"),
    ("+12025550114", "Can I bring a friend to youth group on Friday? 🙂"),
    ("+12025550117", "Thank you for the prayers this week."),
    ("+12025550199", "Hi, we visited on Sunday. What time is the Wednesday meal?"),
)
MEMBERS = (
    ("Mary", "Johnson", "+12025550111", ("Worship Team", "Volunteers")),
    ("James", "Smith", "+12025550112", ("Volunteers",)),
    ("Patricia", "Williams", "+12025550113", ("Worship Team",)),
    ("John", "Brown", "+12025550114", ("Youth Group",)),
    ("Linda", "Davis", "+12025550115", ("Youth Group", "Volunteers")),
    ("Robert", "Miller", "+12025550116", ()),
    ("Grace", "Wilson", "+12025550117", ("Worship Team",)),
    ("David", "Moore", "+12025550118", ("Youth Group",)),
)


@dataclass(frozen=True)
class DemoLogin:
    church_id: UUID
    email: str
    password: str
    created: bool


async def _church(deps: Deps) -> DemoLogin:
    async with deps.db.acquire() as conn:
        user = await user_q.get_user_by_email(conn, OWNER_EMAIL)
    if user is not None:
        return DemoLogin(user["church_id"], OWNER_EMAIL, OWNER_PASSWORD, created=False)
    signed_in = await accounts.register(
        deps.db, deps.redis, deps.settings, church_name=CHURCH_NAME, email=OWNER_EMAIL,
        password=OWNER_PASSWORD, name=OWNER_NAME)
    return DemoLogin(UUID(str(signed_in.church["id"])), OWNER_EMAIL, OWNER_PASSWORD, True)


async def _groups(deps: Deps, church_id: UUID) -> dict[str, str]:
    existing, _ = await groups.list_groups(deps.db, church_id, 200, None)
    ids = {g["name"]: g["id"] for g in existing}
    for name in GROUPS:
        if name not in ids:
            ids[name] = (await groups.create_group(deps.db, church_id, name))["id"]
    return ids


async def _members(deps: Deps, church_id: UUID, group_ids: dict[str, str]) -> int:
    created = 0
    for first, last, phone, in_groups in MEMBERS:
        body: dict[str, Any] = {"first_name": first, "last_name": last, "phone": phone,
                                "email": f"{first.lower()}@example.org"}
        try:
            member = await members.create_member(deps.db, deps.settings, church_id, body)
        except Conflict:
            continue  # seeded before, memberships included
        created += 1
        for group in in_groups:
            await groups.change_members(deps.db, deps.redis, church_id,
                                        UUID(group_ids[group]), [member["id"]], add=True)
    return created


async def _recheck_failed_number(deps: Deps, church_id: UUID) -> None:
    """A demo database seeded before linking asked the carrier holds the demo number as
    `failed` (no profile id given); set it up again: the linking job now finds it attached
    to a profile in the carrier account and marks it `linked`."""
    for number in await numbers.list_numbers(deps.db, church_id):
        if number["phone"] == DEMO_NUMBER["phone"] and number["status"] == "failed":
            await numbers.update_number(deps.db, church_id, UUID(number["id"]), {})


async def seed_demo(deps: Deps) -> DemoLogin:
    """Create (or find) the demo church, owner, number, groups and members."""
    if deps.settings.production:
        raise RuntimeError("seed-demo refuses to run with YWM_ENV=production")
    login = await _church(deps)
    try:
        # The simulator's account holds this number from start-up (ACCOUNT_NUMBERS in
        # server/carriers/simulator/state.py), so it is registered without asking it.
        await numbers.register_number(deps.db, login.church_id, dict(DEMO_NUMBER))
    except Conflict:
        await _recheck_failed_number(deps, login.church_id)  # already there
    group_ids = await _groups(deps, login.church_id)
    await _members(deps, login.church_id, group_ids)
    return login
