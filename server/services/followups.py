"""After-commit work: what a service asks to have run once its transaction committed.

A service that changes state writes the durable record in its transaction (a `queued`
reply, a `queued` broadcast, committed counts) and returns follow-ups naming the work to
schedule; the caller, a handler or a task, passes them to `enqueue` (async code) or
`enqueue_now` (worker threads) after the commit. One rule for every follow-up: a failed
enqueue is logged and dropped, never raised, because the record is durable and the
reconciler (server/services/reconcile.py) or the next change finds it again. An answer
already committed must not turn into an error because Redis blinked.

The Huey tasks that carry the work out live in workers/, which services and handlers do
not import: each task module registers how a follow-up of its kind is enqueued
(`@runs(Kind)`), and the process entry points import workers/ (server/app.py,
workers/__init__.py), so every kind has its task before the first request or task runs.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

log = logging.getLogger("ywm.followups")


@dataclass(frozen=True)
class FollowUp:
    """Work to schedule after a commit; ids as strings (task arguments travel as JSON)."""
    church_id: str


@dataclass(frozen=True)
class SendReply(FollowUp):
    """A conversation message written `queued`: send it (the reconciler re-finds it)."""
    conversation_message_id: str


@dataclass(frozen=True)
class StartDispatch(FollowUp):
    """A broadcast with `queued` recipients: start its dispatch lanes."""
    message_id: str


@dataclass(frozen=True)
class PublishProgress(FollowUp):
    """A throttled broadcast.progress: publish the counts once the window ends, `delay`
    seconds from now (a lost one is covered by the next change after its flag expires)."""
    message_id: str
    delay: float


F = TypeVar("F", bound=FollowUp)
_runners: dict[type[FollowUp], Callable[[FollowUp], object]] = {}


def runs(kind: type[F]) -> Callable[[Callable[[F], object]], Callable[[F], object]]:
    """Register the function that enqueues follow-ups of `kind` (one per kind)."""
    def register(runner: Callable[[F], object]) -> Callable[[F], object]:
        if kind in _runners:
            raise ValueError(f"{kind.__name__} already has a runner")
        _runners[kind] = runner  # type: ignore[assignment]
        return runner
    return register


def start_dispatches(pairs: Iterable[tuple[str, str]]) -> list[StartDispatch]:
    """`StartDispatch` for each (church_id, message_id) a service reports as accepted."""
    return [StartDispatch(str(church_id), str(message_id)) for church_id, message_id in pairs]


def enqueue_now(followups: Iterable[FollowUp]) -> int:
    """Enqueue each follow-up from a blocking context (a worker thread); returns how many
    were enqueued. A missing runner is a wiring bug and raises; a failed enqueue is
    logged for the reconciler to recover."""
    enqueued = 0
    for followup in followups:
        runner = _runners.get(type(followup))
        if runner is None:
            raise LookupError(f"no task runs {type(followup).__name__}: import workers")
        try:
            runner(followup)
        except Exception:  # noqa: BLE001 - the record is durable; the reconciler recovers
            log.warning("%s enqueue failed; left for the reconciler",
                        type(followup).__name__, exc_info=True,
                        extra={"church_id": followup.church_id})
        else:
            enqueued += 1
    return enqueued


async def enqueue(followups: Iterable[FollowUp]) -> int:
    """`enqueue_now` from async code: the Redis writes run in the default executor so the
    event loop never blocks on them, in a copy of this context (the current trace span
    goes along, so the tasks continue the request's trace)."""
    pending = list(followups)
    if not pending:
        return 0
    return await asyncio.get_running_loop().run_in_executor(
        None, contextvars.copy_context().run, enqueue_now, pending)
