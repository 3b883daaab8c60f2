"""structlog JSON logs with service, event and correlation ids, and no personal data."""

from __future__ import annotations

import logging
import re
import sys
import unicodedata
from collections.abc import Mapping
from typing import Any

import structlog

# Keys that carry a person's identity. Compared after lower-casing, removing accents and
# separators, so `date_naissance`, `dateNaissance`, `Date-Naissance` and `birth_date` all match.
PERSONAL_KEYS = {
    "nom",
    "prenom",
    "prenoms",
    "nomusage",
    "nomnaissance",
    "name",
    "firstname",
    "lastname",
    "surname",
    "givenname",
    "fullname",
    "ine",
    "inenormalise",
    "telephone",
    "tel",
    "phone",
    "mobile",
    "portable",
    "courriel",
    "email",
    "mail",
    "adresse",
    "address",
    "rue",
    "datenaissance",
    "birthdate",
    "dateofbirth",
    "dob",
    "naissance",
}
REDACTED = "[redacted]"
_SEPARATORS = re.compile(r"[\s_\-.]+")


def _normal_key(key: str) -> str:
    folded = unicodedata.normalize("NFKD", key).encode("ascii", "ignore").decode().lower()
    return _SEPARATORS.sub("", folded)


def is_personal_key(key: object) -> bool:
    return isinstance(key, str) and _normal_key(key) in PERSONAL_KEYS


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 8:
        return value
    if isinstance(value, Mapping):
        return {k: _scrub(v, depth + 1) for k, v in value.items() if not is_personal_key(k)}
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


def drop_personal_data(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Remove personal-data keys at any depth, so that none reaches a log line."""
    return {k: _scrub(v) for k, v in event_dict.items() if not is_personal_key(k)}


def configure_logging(service: str, level: str = "INFO", stream: Any = None) -> None:
    """JSON lines on stderr; `bind_contextvars(event_id=..., correlation_id=...)` adds ids."""
    stream = stream or sys.stderr
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            drop_personal_data,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries log through the standard library: route them through the same scrubbing.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                drop_personal_data,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.getLevelName(level), logging.INFO))
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)


def error_fields(error: BaseException) -> dict[str, str]:
    """What to log about an exception: its type and where it was raised, not its message (a
    database or validation message may quote the personal data it choked on)."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f"{frame.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}" if frame else "?"
    return {"error": type(error).__name__, "where": where}
