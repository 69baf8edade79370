"""Phone numbers: normalise user input to E.164 (CARRIERS.md §6) and classify numbers.

Input in common US formats (`(415) 555-2671`, `415.555.2671`, `1 415 555 2671`,
`+1 (415) 555-2671`) and international numbers with a leading `+` are accepted; letters
(vanity numbers, `ext`/`x` extensions) and anything `phonenumbers` does not consider a
valid number are refused. Only E.164 strings are stored.

Digits from other scripts (fullwidth `４１５`, Arabic-Indic `٤١٥`, Devanagari ...) are
folded to ASCII first: phonenumbers reads them as the same number, so keeping them would
store a second spelling of one phone, dodge the duplicate check and the phone hash, and a
STOP from the real number would miss that member (docs/decisions.md, "Phone digits").
"""
from __future__ import annotations

import functools
import re
import unicodedata

import phonenumbers

DEFAULT_REGION = "US"
# Vanity letters and extension markers are refused for SMS (CARRIERS.md §6); phonenumbers
# would otherwise translate letters to digits or drop an extension silently.
_REFUSED = re.compile(r"[A-Za-z#*;,]")
# ASCII classes only (re.ASCII): any other digit has been folded before this runs, and
# anything left that is not ASCII is refused.
_ALLOWED = re.compile(r"^\+?[\d\s().\-/]+$", re.ASCII)  # a "+" only in front
_NON_DIGIT = re.compile(r"\D", re.ASCII)
TOLL_FREE_NPAS = frozenset({"800", "833", "844", "855", "866", "877", "888"})
MAX_INPUT = 40


class InvalidPhone(ValueError):
    """The text is not a phone number we can send to; the message says why."""


def normalize(raw: str) -> str:
    """Return the E.164 form of `raw`, or raise InvalidPhone."""
    text = fold_digits((raw or "").strip())
    if not text:
        raise InvalidPhone("A phone number is required.")
    if len(text) > MAX_INPUT or _REFUSED.search(text) or not _ALLOWED.match(text):
        raise InvalidPhone("Use digits only; letters and extensions cannot receive texts.")
    digits = _NON_DIGIT.sub("", text)
    if not text.startswith("+") and len(digits) == 11 and digits.startswith("1"):
        text = "+" + digits  # `1 415 555 2671`: a US trunk prefix, not a country code
    nanp = _nanp_digits(text, digits)
    if nanp is not None:
        if not _nanp_exchange_valid(nanp[:6]):
            raise InvalidPhone("This is not a valid phone number.")
        return "+1" + nanp
    return _normalize_slow(text)


def fold_digits(text: str) -> str:
    """`text` with every Unicode decimal digit (category Nd) replaced by its ASCII digit,
    the fullwidth plus sign by "+" and any Unicode space (a pasted no-break space, which
    was always accepted) by " "; other characters are left for validation to refuse."""
    if text.isascii():
        return text
    return "".join(_fold_char(ch) for ch in text)


def _fold_char(ch: str) -> str:
    if unicodedata.category(ch) == "Nd":
        return str(unicodedata.decimal(ch))
    if ch.isspace():
        return " "
    return "+" if ch == "\uff0b" else ch


def _nanp_digits(text: str, digits: str) -> str | None:
    """The 10 national digits of a +1 (NANP) number, or None for anything else."""
    if text.startswith("+"):
        return digits[1:] if len(digits) == 11 and digits.startswith("1") else None
    return digits if len(digits) == 10 else None


@functools.lru_cache(maxsize=16384)
def _nanp_exchange_valid(npa_nxx: str) -> bool:
    """phonenumbers' validity of a NANP number depends only on its NPA-NXX (checked on
    100,000 random numbers, and by tests/services/test_phones.py), so one parse per
    exchange serves every number in it: bulk imports spend most of their time here."""
    return bool(phonenumbers.is_valid_number(phonenumbers.parse(f"+1{npa_nxx}5555")))


def _normalize_slow(text: str) -> str:
    try:
        parsed = phonenumbers.parse(text, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise InvalidPhone("This is not a phone number.") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhone("This is not a valid phone number.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def try_normalize(raw: str) -> str | None:
    try:
        return normalize(raw)
    except InvalidPhone:
        return None


def is_toll_free(e164: str) -> bool:
    """NANP toll-free numbers (FCC's list of NPAs in service)."""
    return e164.startswith("+1") and len(e164) == 12 and e164[2:5] in TOLL_FREE_NPAS


def mask(e164: str) -> str:
    """A log-safe form: the last two digits only."""
    return "*" * max(0, len(e164) - 2) + e164[-2:]
