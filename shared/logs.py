"""Structured logging, configured once at the process edge."""

from __future__ import annotations

import logging
import sys

import structlog

from mountsync.shared.config import Settings


def configure_logging(settings: Settings) -> None:
    """JSON lines when ``MOUNTSYNC_LOG_FORMAT=json`` (deployments), readable console otherwise."""
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write per line: print() writes the text and the newline apart, so with PYTHONUNBUFFERED the
        # lines of a worker's pool children, which share one log file, could splice into each other.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
