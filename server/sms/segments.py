"""SMS segment counting (CARRIERS.md §5): which encoding a text needs and how many parts.

GSM-7 when every character is in the GSM 03.38 basic or extension table (extension
characters cost two septets), UCS-2 otherwise. One segment holds 160 septets / 70 UTF-16
units; a multi-part message spends 6 octets per part on the concatenation header, leaving
153 septets / 67 units, and parts are filled without splitting an escape pair, a surrogate
pair or a grapheme (TwilioDevEd/message-segment-calculator), so a part may hold less.
"""
from __future__ import annotations

import unicodedata
from typing import Iterator, NamedTuple

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# GSM 03.38 basic table: one septet each.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
# Extension table: ESC + char, two septets each.
GSM_EXTENSION = frozenset("^{}\\[]~|€\f")

# Capacities in septets (GSM-7) or UTF-16 code units (UCS-2): single message, per part.
GSM_SINGLE, GSM_PART = 160, 153
UCS_SINGLE, UCS_PART = 70, 67

_ZWJ = "\u200d"


class SegmentInfo(NamedTuple):
    encoding: str  # "GSM-7" or "UCS-2"
    segments: int  # 0 for an empty text


def is_gsm7(text: str) -> bool:
    return all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text)


def _extends(ch: str) -> bool:
    """True when `ch` belongs to the grapheme before it (combining mark, modifier, joiner)."""
    code = ord(ch)
    return (unicodedata.category(ch) in ("Mn", "Me", "Mc")
            or 0xFE00 <= code <= 0xFE0F          # variation selectors
            or 0x1F3FB <= code <= 0x1F3FF        # emoji skin-tone modifiers
            or 0xE0020 <= code <= 0xE007F)       # emoji tag sequences


def _is_regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def graphemes(text: str) -> Iterator[str]:
    """An approximation of extended grapheme clusters, enough never to split an emoji,
    a flag or a letter from its accents across two parts."""
    cluster = ""
    for ch in text:
        if not cluster:
            cluster = ch
        elif _extends(ch) or cluster.endswith(_ZWJ) or ch == _ZWJ:
            cluster += ch
        elif _is_regional(ch) and len(cluster) == 1 and _is_regional(cluster):
            cluster += ch  # two regional indicators make one flag
        else:
            yield cluster
            cluster = ch
    if cluster:
        yield cluster


def _utf16_units(chunk: str) -> int:
    return len(chunk.encode("utf-16-le")) // 2


def _septets(chunk: str) -> int:
    return sum(2 if ch in GSM_EXTENSION else 1 for ch in chunk)


def _pack(sizes: list[int], single: int, part: int) -> int:
    if sum(sizes) <= single:
        return 1
    parts, used = 1, 0
    for size in sizes:
        if used + size > part and used > 0:
            parts, used = parts + 1, 0
        used += size
    return parts


def segment_info(text: str) -> SegmentInfo:
    """Encoding and part count of `text`, exact on CARRIERS.md §5's worked examples."""
    if not text:
        return SegmentInfo(GSM7, 0)
    if is_gsm7(text):
        # GSM characters are single code points, so each one is its own unit to place.
        return SegmentInfo(GSM7, _pack([_septets(ch) for ch in text], GSM_SINGLE, GSM_PART))
    sizes = [_utf16_units(g) for g in graphemes(text)]
    return SegmentInfo(UCS2, _pack(sizes, UCS_SINGLE, UCS_PART))
