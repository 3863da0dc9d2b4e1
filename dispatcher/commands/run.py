"""`yujing run`: the daemon (scheduler, delivery workers and HTTP server in one process)."""

from __future__ import annotations

import asyncio

from dispatcher.commands.terminal import load_settings, operator_errors


def run() -> None:
    """Run the daemon: poll forecasts, evaluate rules, deliver and serve HTTP."""
    from dispatcher import logs
    from dispatcher.daemon import serve

    with operator_errors():
        settings = load_settings()
        logs.configure(settings.log_level, settings.log_format)
        asyncio.run(serve(settings))
