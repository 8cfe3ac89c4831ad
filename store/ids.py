"""IDs as people type them: sitrep's short numbers and the status page's GUIDs.

One upstream thing has many spellings (`3FA85F64…`, no dashes, `{…}` as .NET prints it); every
lookup and every stored link goes through `guid` so they all name the same row. A number past
what an `Integer` key holds names no row, and asking the database for it overflows its driver."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import func
from sqlalchemy.sql.elements import ColumnElement

#: The largest value of an `Integer` key on both databases (PostgreSQL's `integer` is 32-bit).
MAX_NUMBER = 2**31 - 1

_DIGITS = re.compile(r"[0-9]+")  # ASCII only: `str.isdigit` also takes "²" and "١", which int() refuses or reads


def digits(ref: str) -> str | None:
    """The digits of a short number as typed (`12`, `#12`), or None when it is not one."""
    text = ref.strip()
    text = text[1:].strip() if text.startswith("#") else text
    return text if _DIGITS.fullmatch(text) else None


def number(ref: str) -> int | None:
    """The short number a ref names, or None (not a number, or too large for any row)."""
    text = digits(ref)
    if text is None or len(text) > len(str(MAX_NUMBER)):
        return None
    value = int(text)
    return value if 0 < value <= MAX_NUMBER else None


def too_large(ref: str) -> bool:
    """Digits, but more than any row's number can be (`1234…` from a paste gone wrong)."""
    text = digits(ref)
    return text is not None and number(ref) is None and text.lstrip("0") != ""


def guid(text: str) -> str | None:
    """The status page's ID in one spelling (lower case, dashes, no braces), or None when
    `text` is not a GUID. Digits alone are read as a number, never as a GUID without dashes.

    assumption: the status page (a .NET API, seed 004) reads a GUID in any of these spellings
    as the same one, and answers with the lower-case dashed form; no seed says so."""
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if digits(text) is not None or len(text) not in (32, 36):
        return None  # uuid.UUID would also take "urn:uuid:…": not something a person pastes
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def spelled_as_guid(column) -> ColumnElement[str]:
    """A stored ID in `guid`'s form without its dashes, computed by the database: rows kept
    before IDs were normalized (a link pasted in capitals) still match."""
    bare = func.replace(func.replace(func.replace(column, "-", ""), "{", ""), "}", "")
    return func.lower(bare)


def bare(canonical: str) -> str:
    """`guid`'s form without dashes, to compare with `spelled_as_guid`."""
    return canonical.replace("-", "")
