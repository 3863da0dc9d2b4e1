"""Phone numbers on paper: a printed report shows 138****5678, never the whole number.

A report is printed, filed and passed on; the village cadres' mobile numbers
in it would go with it. `mask_phone` keeps the first three and last four
digits of the national number (the way Chinese apps show one); `scrub` masks
every number of the directory, and anything else shaped like a phone number,
in a finished text — the last line of defence behind the templates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = ["mask_phone", "scrub"]

_COUNTRY: Final = "+86"
# 7 to 15 digits not inside a longer word (a hex hash, an id) nor a decimal
_PHONE_LIKE: Final = re.compile(r"(?<![\w.+\-])\+?\d{7,15}(?![\w.])")


def mask_phone(number: str) -> str:
    """+8613812345678 → 138****5678; a short or odd number keeps only its last two digits."""
    digits = "".join(c for c in number if c.isdigit())
    if number.startswith(_COUNTRY):
        digits = digits[len(_COUNTRY) - 1 :]
    if len(digits) >= 10:
        return f"{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"
    if len(digits) >= 4:
        return f"{'*' * (len(digits) - 2)}{digits[-2:]}"
    return number


def scrub(text: str, phones: Iterable[str]) -> str:
    """`text` with every phone of `phones` (E.164 and national forms) and every
    phone-like run of digits masked."""
    forms: dict[str, str] = {}
    for phone in phones:
        if not phone:
            continue
        masked = mask_phone(phone)
        forms[phone] = masked
        if phone.startswith(_COUNTRY):
            forms[phone[len(_COUNTRY) :]] = masked
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, forms[form])
    return _PHONE_LIKE.sub(lambda m: mask_phone(m.group(0)), text)
