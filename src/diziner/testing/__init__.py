"""Test support: a scripted OpenAI-compatible HTTP server (:mod:`diziner.testing.server`),
fault hooks (:mod:`diziner.testing.faults`) and :func:`call_once`."""
from __future__ import annotations

import asyncio
from typing import Any


def call_once(client: Any, request: Any) -> Any:
    """One call from synchronous code, in its own event loop, whose HTTP pools are closed
    before the loop ends (no "Unclosed client session" at exit). Local models stay loaded."""

    async def run() -> Any:
        try:
            return await client.complete(request)
        finally:
            adapter = getattr(client, "adapter", client)
            if getattr(adapter, "backend", None) != "local" and hasattr(client, "aclose"):
                await client.aclose()

    return asyncio.run(run())
