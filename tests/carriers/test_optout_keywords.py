"""Keyword matching per CARRIERS.md §4.2: exact whole-body keywords, normalised."""
from __future__ import annotations

import pytest

from server.sms.keywords import keyword_action


@pytest.mark.parametrize("body, action", [
    ("STOP", "opt_out"), ("stop", "opt_out"), (" Stop.", "opt_out"), ("sToP!", "opt_out"),
    ("STOP ALL", "opt_out"), ("stop   all", "opt_out"), ("Unsubscribe", "opt_out"),
    ("cancel", "opt_out"), ("END", "opt_out"), ("quit", "opt_out"), ("REVOKE", "opt_out"),
    ("opt out", "opt_out"), ("OPTOUT", "opt_out"), ("ＳＴＯＰ", "opt_out"),  # NFKC full-width
    ("START", "opt_in"), ("unstop", "opt_in"), ("Yes", "opt_in"), ("start.", "opt_in"),
    ("HELP", "help"), ("info", "help"), ("Help!", "help"),
    ("stop texting me", "review"), ("Stop please", "review"), ("please stop texting me", "review"),
    ("unsubscribe me", "review"), ("Don't text me", "review"),
])
def test_keywords(body: str, action: str) -> None:
    result = keyword_action(body)
    assert result is not None and result[0] == action, result


@pytest.mark.parametrize("body", [
    "See you Sunday", "I can't stop smiling", "Yes please, count me in for the picnic",
    "startup meeting?", "helpful, thanks", "the end of the service was lovely", "",
    "stopped by the office",
])
def test_non_matches(body: str) -> None:
    assert keyword_action(body) is None


def test_matched_keyword_is_normalised() -> None:
    assert keyword_action("  Stop   ALL! ") == ("opt_out", "stop all")
