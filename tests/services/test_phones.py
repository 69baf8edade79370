"""E.164 normalisation: the US formats CARRIERS.md §6 lists, and what is refused."""
from __future__ import annotations

import random

import phonenumbers
import pytest

from server.sms import phones

ACCEPTED = [
    ("(415) 555-2671", "+14155552671"), ("415-555-2671", "+14155552671"),
    ("415.555.2671", "+14155552671"), ("4155552671", "+14155552671"),
    ("1 415 555 2671", "+14155552671"), ("+1 (415) 555-2671", "+14155552671"),
    ("+14155552671", "+14155552671"), ("  415 555 2671 ", "+14155552671"),
    ("+44 20 7946 0958", "+442079460958"), ("1-888-555-0100", "+18885550100"),
]
REFUSED = ["", "   ", "555-1234", "12345", "1-800-FLOWERS", "415 555 2671 x12",
           "415-555-2671 ext 3", "415#555#2671", "+1 415 555 26711", "011 44 20 7946 0958x",
           "+0 415 555 2671", "4155552671" * 5, "tel:4155552671", "415+555+2671",
           "+15551234567", "(055) 555-2671", "415 155 2671", "+1 415 555 267"]


@pytest.mark.parametrize("raw,expected", ACCEPTED)
def test_accepted(raw: str, expected: str) -> None:
    assert phones.normalize(raw) == expected


@pytest.mark.parametrize("raw", REFUSED)
def test_refused(raw: str) -> None:
    with pytest.raises(phones.InvalidPhone):
        phones.normalize(raw)
    assert phones.try_normalize(raw) is None


def test_nanp_fast_path_agrees_with_phonenumbers() -> None:
    """The per-exchange cache must give phonenumbers' own answer for every NANP number."""
    rng = random.Random(20261129)
    for _ in range(3000):
        digits = f"{rng.randint(200, 999)}{rng.randint(0, 999):03d}{rng.randint(0, 9999):04d}"
        parsed = phonenumbers.parse("+1" + digits)
        expected = "+1" + digits if phonenumbers.is_valid_number(parsed) else None
        assert phones.try_normalize(digits) == expected, digits
        assert phones.try_normalize("+1 " + digits) == expected, digits


def test_toll_free() -> None:
    assert phones.is_toll_free("+18885550100")
    assert not phones.is_toll_free("+14155552671")
    assert not phones.is_toll_free("+442079460958")


# Digits from other scripts name the same number; phonenumbers reads them, so they are
# folded to ASCII before anything is checked, stored or hashed.
FOLDED = [
    ("４１５５５５２６７１", "+14155552671"),  # fullwidth
    ("＋１ (４１５) ５５５-２６７１", "+14155552671"),  # fullwidth plus too
    ("٤١٥٥٥٥٢٦٧١", "+14155552671"),  # Arabic-Indic
    ("۴۱۵۵۵۵۲۶۷۱", "+14155552671"),  # Extended Arabic-Indic (Persian)
    ("४१५ ५५५ २६७१", "+14155552671"),  # Devanagari
    ("415\u00a0555\u00a02671", "+14155552671"),  # a pasted no-break space
    ("+44 ２０ 7946 0958", "+442079460958"),
]


@pytest.mark.parametrize("raw,expected", FOLDED)
def test_non_ascii_digits_fold_to_ascii(raw: str, expected: str) -> None:
    result = phones.normalize(raw)
    assert result == expected and result.isascii()


@pytest.mark.parametrize("raw", ["４１５-５５５-２６７１ ｘ１２", "415\u2013555\u20132671",
                                 "①②③4567890", "4155552671\u200b"])
def test_other_non_ascii_is_refused(raw: str) -> None:
    with pytest.raises(phones.InvalidPhone):
        phones.normalize(raw)
