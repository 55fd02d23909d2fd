"""Resolvers named by dotted path in settings.MOETRACK."""

from __future__ import annotations

from typing import Any


def anonymous_id(request: Any) -> str | None:
    value: str | None = request.COOKIES.get("anon_id")
    return value


def customer_id(user: Any) -> str:
    return f"user-{user.username}"
