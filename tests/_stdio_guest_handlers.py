"""Handlers for a FakeGuest served on stdio (``python -m hvmagic.testing.guest --stdio
--handlers tests._stdio_guest_handlers``), for tests that talk to it as to a ``pwsh -s`` process."""

from __future__ import annotations

from typing import Any

from hvmagic.testing import FakeGuest, HandlerContext


def _save(ctx: HandlerContext) -> None:
    ctx.variables["saved"] = ctx.parameters["Value"]


def _saved(ctx: HandlerContext) -> Any:
    return ctx.variables.get("saved")


def _items(ctx: HandlerContext) -> list[dict[str, Any]]:
    return [{"Name": f"item{i}", "Size": i * 10} for i in range(4)]


def install(guest: FakeGuest) -> None:
    guest.add_handler("Get-Answer", lambda ctx: 42)
    guest.add_handler("Save-Value", _save)
    guest.add_handler("Get-SavedValue", _saved)
    guest.add_handler("Get-Items", _items)
