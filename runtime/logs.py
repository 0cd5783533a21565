"""The one structlog set-up: coloured console lines on a terminal, JSON lines otherwise (and with --json)."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(json: bool | None = None, level: str = "info", stream=None) -> None:
    """Call once at process start (the CLI does). Logs go to stderr so stdout stays for results."""
    stream = stream or sys.stderr
    use_json = (not stream.isatty()) if json is None else json
    renderer = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    # JSON lines carry a logged exception's traceback as text; the console renderer formats it itself
    exc = [structlog.processors.format_exc_info] if use_json else []
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *exc,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
