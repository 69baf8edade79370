"""The lease every claim of outbound work takes: broadcast recipients and conversation replies.

A claimed row is `sending` with its attempt counted, and its `next_attempt_at` is the lease
expiry. So "needs work now" is always `status IN (queued, sending, retrying) AND
next_attempt_at <= now()`: a killed worker's rows simply become due again, and the
reconciler has one rule for every kind of outbound work.
"""
from __future__ import annotations


def take_lease(alias: str) -> str:
    """The SET list of a claiming UPDATE of the rows aliased `alias`, for `:lease` seconds."""
    return (f"status = 'sending', attempts = {alias}.attempts + 1, "
            "lease_expires_at = now() + make_interval(secs => :lease), "
            "next_attempt_at = now() + make_interval(secs => :lease), updated_at = now()")
