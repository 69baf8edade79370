"""Segment counting: CARRIERS.md §5's worked examples, exactly."""
from __future__ import annotations

import pytest

from server.sms.segments import GSM7, UCS2, graphemes, segment_info

EMOJI = "\U0001F600"  # one astral char = a surrogate pair = 2 UTF-16 units


@pytest.mark.parametrize("text, encoding, segments", [
    ("a" * 160, GSM7, 1),
    ("a" * 161, GSM7, 2),
    ("a" * 306, GSM7, 2),
    ("a" * 307, GSM7, 3),
    ("[" * 80, GSM7, 1),            # 160 septets: extension chars count two
    ("[" * 81, GSM7, 2),
    ("a" * 152 + "€" + "a" * 10, GSM7, 2),  # the escape pair is not split
    (EMOJI * 35, UCS2, 1),          # 70 units
    (EMOJI * 36, UCS2, 2),
    ("a" * 70 + "\u2019", UCS2, 2),  # a curly quote forces UCS-2: 71 units
    ("a" * 70, GSM7, 1),
    ("", GSM7, 0),
])
def test_worked_examples(text: str, encoding: str, segments: int) -> None:
    assert segment_info(text) == (encoding, segments)


def test_ucs2_parts_never_split_a_surrogate_pair() -> None:
    # 66 units of "a" then an emoji: 68 units > 67, so the emoji starts part 2 ...
    assert segment_info("é" + "a" * 65 + EMOJI + "b" * 5).segments == 2
    # ... and 33 emoji fill a 66-unit part (67 would split a pair): 134 units, which a
    # naive ceil(134 / 67) would call 2 parts, are 33 + 33 + 1 emoji = 3 parts.
    assert segment_info(EMOJI * 66).segments == 2
    assert segment_info(EMOJI * 67).segments == 3


def test_gsm_extension_and_basic_sets() -> None:
    assert segment_info("Price: €5 {ok} ~ ^ | \\").encoding == GSM7
    assert segment_info("back`tick").encoding == UCS2
    assert segment_info("em — dash").encoding == UCS2
    assert segment_info("Grüße aus Åland ¿Ñ?").encoding == GSM7


def test_graphemes_keep_flags_and_zwj_sequences_whole() -> None:
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"
    flag = "\U0001F1FA\U0001F1F8"
    assert list(graphemes("a" + family + flag + "e\u0301")) == ["a", family, flag, "e\u0301"]
