"""Placeholder until the maintenance issue."""

from __future__ import annotations


def make_backend(settings, *, statuspage, appfirst):
    return None
