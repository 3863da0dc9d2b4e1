"""How many SMS segments a text takes (3GPP TS 23.038 encodings).

A text that uses only the GSM 03.38 alphabet is sent as GSM-7: 160 septets in one
segment, 153 per segment once concatenated (the user-data header takes 7).
Characters from the extension table (``^{}[]~|€\\`` and form feed) are sent as
escape + character and count twice. Any other character — every Chinese
character, for one — switches the *whole* message to UCS-2: 70 UTF-16 code units
in one segment, 67 per segment when concatenated. Characters outside the BMP
(emoji) are surrogate pairs and count as two units.

Pure functions, no I/O: the renderer uses them to keep warnings within the
channel's limit, and tests pin the boundaries.
"""

from __future__ import annotations

# GSM 03.38 basic character set (ESC, 0x1B, is left out: it is not a character
# a text can carry, only the prefix of an extension-table character).
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# GSM 03.38 extension table: each is sent as ESC + character, two septets.
_GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE = 160
GSM7_PART = 153
UCS2_SINGLE = 70
UCS2_PART = 67

#: Segments a warning may take on SMS channels (the bureau's signature counts).
MAX_SEGMENTS = 3
#: Characters of Chinese text that fit in MAX_SEGMENTS concatenated UCS-2 segments.
MAX_UCS2_CHARS = MAX_SEGMENTS * UCS2_PART  # 201


def is_gsm7(text: str) -> bool:
    """True when every character of `text` is in the GSM-7 alphabet (basic or extension)."""
    return all(ch in _GSM7_BASIC or ch in _GSM7_EXTENSION for ch in text)


def sms_segments(text: str) -> int:
    """Number of SMS segments `text` needs; an empty text still takes one.

    GSM-7 when every character allows it (160 septets alone, 153 per part),
    otherwise UCS-2 counted in UTF-16 code units (70 alone, 67 per part).
    """
    if is_gsm7(text):
        units = sum(2 if ch in _GSM7_EXTENSION else 1 for ch in text)
        single, part = GSM7_SINGLE, GSM7_PART
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part = UCS2_SINGLE, UCS2_PART
    if units <= single:
        return 1
    return -(-units // part)  # ceiling division


def fits_sms(text: str, max_segments: int = MAX_SEGMENTS) -> bool:
    """True when `text` fits in at most `max_segments` SMS segments."""
    return sms_segments(text) <= max_segments
