"""Placeholder until the maintenance issue."""


def register(app, ctx, owners) -> None:
    return None
