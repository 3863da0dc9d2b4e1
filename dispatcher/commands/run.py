"""`yujing run`: the daemon (scheduler, delivery workers and HTTP server in one process)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from dispatcher.commands.terminal import ConfigOption, load_settings, operator_errors


def run(
    config: ConfigOption = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            metavar="N",
            min=0,
            max=65535,
            help="HTTP port [default: YUJING_HTTP_PORT, 8470]",
        ),
    ] = None,
) -> None:
    """Run the daemon: poll forecasts, evaluate rules, deliver and serve HTTP."""
    from dispatcher import logs
    from dispatcher.daemon import serve

    with operator_errors():
        settings = load_settings(config_dir=config, http_port=port)
        logs.configure(settings.log_level, settings.log_format)
        asyncio.run(serve(settings))
