"""The after-commit contract (server/services/followups.py): each follow-up kind becomes
its Huey task under the task's stable name, and a failed enqueue is logged and dropped,
never raised, because the row it points at is durable and the reconciler finds it."""
from __future__ import annotations

import ast
import logging
import pathlib
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from server.platform import queue
from server.services.followups import (FollowUp, PublishProgress, SendReply, StartDispatch,
                                       enqueue, enqueue_now)

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHURCH, ITEM = "7c9e6679-7425-40de-944b-e07fc1f90ae7", "0196658b-0f1a-4a5f-91c2-d970961c7a68"


@pytest.fixture
def test_queue(settings: Any, clean: None) -> Iterator[Any]:
    import workers  # noqa: F401  (registers the runners, as the process entry points do)
    queue.configure(settings)
    queue.huey.flush()
    yield queue.huey
    queue.configure(settings)
    queue.huey.flush()


CASES: list[tuple[FollowUp, str, int]] = [
    # follow-up, its task's stable name, how many tasks (a broadcast gets send_lanes lanes)
    (SendReply(CHURCH, ITEM), "sends.send_reply", 1),
    (StartDispatch(CHURCH, ITEM), "sends.dispatch_lane", -1),
    (PublishProgress(CHURCH, ITEM, 0.5), "sends.publish_progress", 1),
]


@pytest.mark.parametrize("followup, task_name, count", CASES,
                         ids=[type(case[0]).__name__ for case in CASES])
def test_each_kind_becomes_its_task(test_queue: Any, settings: Any, followup: FollowUp,
                                    task_name: str, count: int) -> None:
    assert enqueue_now([followup]) == 1
    expected = settings.send_lanes if count < 0 else count
    assert [(t.name, t.args) for t in test_queue.pending()] == \
        [(task_name, (CHURCH, ITEM))] * expected


@pytest.mark.gen_test(timeout=30)
async def test_async_enqueue_runs_off_the_loop(test_queue: Any) -> None:
    assert await enqueue([SendReply(CHURCH, ITEM), SendReply(CHURCH, CHURCH)]) == 2
    assert [t.args for t in test_queue.pending()] == [(CHURCH, ITEM), (CHURCH, CHURCH)]
    assert await enqueue([]) == 0


def test_a_lost_enqueue_is_logged_not_raised(test_queue: Any, settings: Any,
                                             caplog: Any) -> None:
    # The queue's Redis is unreachable (nothing listens on port 1): the commit already
    # happened, so the caller must still answer; the reconciler re-finds the rows.
    queue.configure(settings.replace(redis_url="redis://127.0.0.1:1/0"))
    with caplog.at_level(logging.WARNING, logger="ywm.followups"):
        assert enqueue_now([SendReply(CHURCH, ITEM), StartDispatch(CHURCH, ITEM)]) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "SendReply enqueue failed; left for the reconciler",
        "StartDispatch enqueue failed; left for the reconciler"]


def test_a_kind_without_a_task_is_a_wiring_error(test_queue: Any) -> None:
    @dataclass(frozen=True)
    class Unwired(FollowUp):
        pass

    with pytest.raises(LookupError, match="Unwired"):
        enqueue_now([Unwired(CHURCH)])
    assert test_queue.pending() == []


def _imported_modules(path: pathlib.Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package, forbidden", [
    ("handlers", ("workers",)),                    # handlers enqueue through follow-ups
    ("server/services", ("workers", "huey")),      # services return them, never enqueue
])
def test_layers_reach_tasks_only_through_followups(package: str,
                                                   forbidden: tuple[str, ...]) -> None:
    offenders = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / package).glob("*.py") for name in _imported_modules(path)
        if name.split(".")[0] in forbidden)
    assert offenders == []
