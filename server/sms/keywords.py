"""Opt-out keyword matching (CARRIERS.md §4.2): which consent action an inbound text asks for.

A text is a keyword only when the whole normalised body equals one: NFKC, trimmed, inner
whitespace collapsed, casefolded, trailing `.`/`!` stripped, matched against the union of
the Twilio, Telnyx and FCC sets. "Stop please" is not a keyword. Because the FCC rule asks
us to honour any reasonable revocation, texts that start with a stop word or say "stop
texting me" are flagged for staff review instead of being ignored.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Literal

Action = Literal["opt_out", "opt_in", "help", "review"]

OPT_OUT_KEYWORDS = frozenset((
    "stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "revoke",
    "optout", "opt out", "opt-out"))
OPT_IN_KEYWORDS = frozenset(("start", "unstop", "yes"))
HELP_KEYWORDS = frozenset(("help", "info"))

_SPACES = re.compile(r"\s+")
_TRAILING = re.compile(r"[.!]+$")
# Non-exact opt-out intents: the body begins with a stop word, or asks to stop/remove.
_REVIEW = re.compile(
    r"^(stop|unsubscribe|cancel|quit|opt[ -]?out|remove me)\b"
    r"|\b(stop|quit) (texting|messaging|sending|contacting)\b"
    r"|\b(unsubscribe|remove) me\b|\bdon'?t (text|message) me\b")


def normalize(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).strip()
    folded = _SPACES.sub(" ", folded).casefold()
    return _TRAILING.sub("", folded).strip()


def keyword_action(text: str) -> tuple[Action, str] | None:
    """The consent action of an inbound body and the keyword as matched, or None."""
    word = normalize(text)
    if word in OPT_OUT_KEYWORDS:
        return "opt_out", word
    if word in OPT_IN_KEYWORDS:
        return "opt_in", word
    if word in HELP_KEYWORDS:
        return "help", word
    if _REVIEW.search(word):
        return "review", word[:64]
    return None
