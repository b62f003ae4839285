"""hclog JSON log lines, the format a go-plugin host understands on a plugin's stderr.

One JSON object per line::

    {"@level":"info","@message":"...","@module":"soup.plugin","@timestamp":"2026-11-25T13:35:32.123456Z",...}

A Go host reads ``@level``, ``@message`` and ``@timestamp`` with unchecked type
assertions (a non-string value crashes it) and parses ``@timestamp`` with exactly six
fractional digits: this module always emits strings in that form. Every other key
becomes a key/value pair on the host's side.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import re
from collections.abc import Mapping
from typing import TextIO

__all__ = [
    "LEVELS",
    "TRACE",
    "HclogJSONFormatter",
    "configure",
    "configure_all",
    "format_record",
    "format_timestamp",
    "level_name",
    "parse_line",
    "python_level",
]

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS: tuple[str, ...] = ("trace", "debug", "info", "warn", "error")
"""hclog's level names, in order."""

_PYTHON_LEVELS: dict[str, int] = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
_ALIASES: dict[str, str] = {"warning": "warn", "critical": "error", "fatal": "error"}
_RESERVED = ("@level", "@message", "@module", "@timestamp")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(?:Z|[+-]\d{2}:\d{2})")
_MAX_DEPTH = 8
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(
    {
        *logging.LogRecord("", 0, "", 0, "", None, None).__dict__,
        "message",
        "asctime",
        "taskName",
    }
)
_HANDLER_MARK = "_soup_hclog_handler"


def format_timestamp(when: datetime.datetime | None = None) -> str:
    """UTC, exactly six fractional digits, ``Z`` (naive datetimes are taken as UTC)."""
    if when is None:
        when = datetime.datetime.now(datetime.UTC)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    else:
        when = when.astimezone(datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def level_name(level: str | int) -> str:
    """The hclog level for a name (any case, ``warning``/``critical`` too) or a Python level.

    Python numbers map by threshold: below DEBUG is trace, WARNING is warn,
    CRITICAL is error. An unknown name is ``info``.
    """
    if isinstance(level, int):
        if level >= logging.ERROR:
            return "error"
        if level >= logging.WARNING:
            return "warn"
        if level >= logging.INFO:
            return "info"
        if level >= logging.DEBUG:
            return "debug"
        return "trace"
    name = str(level).strip().lower()
    name = _ALIASES.get(name, name)
    return name if name in LEVELS else "info"


def python_level(name: str) -> int:
    """The Python logging level for an hclog level name (``ValueError`` if unknown)."""
    try:
        return _PYTHON_LEVELS[name.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {name!r} (expected one of: {', '.join(LEVELS)})"
        ) from None


def _jsonable(value: object, depth: int = 0) -> object:
    """``value`` made JSON-safe: containers walked, everything else unknown is ``str()``'d."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth < _MAX_DEPTH:
        if isinstance(value, Mapping):
            return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [_jsonable(v, depth + 1) for v in value]
    try:
        return str(value)
    except Exception:  # a broken __str__ must not break logging
        return f"<unprintable {type(value).__name__}>"


def format_record(
    level: str,
    message: str,
    /,
    *,
    module: str = "soup",
    now: datetime.datetime | None = None,
    **fields: object,
) -> str:
    """One hclog JSON line (without newline).

    ``@level``, ``@message``, ``@module`` and ``@timestamp`` are always strings. A
    field named like one of them is renamed (``@level`` -> ``level``, ...).
    """
    return _format(level, message, module, now, fields)


def _format(
    level: str | int,
    message: object,
    module: str,
    now: datetime.datetime | None,
    fields: Mapping[str, object],
) -> str:
    record: dict[str, object] = {
        "@level": level_name(level),
        "@message": message if isinstance(message, str) else str(message),
        "@module": str(module),
        "@timestamp": format_timestamp(now),
    }
    for key, value in fields.items():
        name = str(key)
        while name in record:
            name = name.lstrip("@") if name.startswith("@") else f"field_{name}"
        record[name] = _jsonable(value)
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


class HclogJSONFormatter(logging.Formatter):
    """Formats log records as hclog JSON lines; ``extra=`` values become fields.

    ``@module`` is the logger's name (``module`` for the root logger).
    """

    def __init__(self, module: str = "soup") -> None:
        super().__init__()
        self.module = module

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            key: value for key, value in record.__dict__.items() if key not in _RECORD_ATTRS
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exception"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        try:
            message = record.getMessage()
        except Exception as exc:  # bad %-args: log what we have rather than nothing
            message = f"{record.msg!s} (log message formatting failed: {exc})"
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        module = record.name if record.name and record.name != "root" else self.module
        return _format(record.levelno, message, module, when, fields)


def _numeric(level: str) -> tuple[int, str | None]:
    try:
        return python_level(level), None
    except ValueError as exc:  # e.g. a bad level from the environment: keep logging
        return logging.DEBUG, str(exc)


def _install(base: logging.Logger, stream: TextIO, numeric: int, module: str) -> None:
    """One hclog handler on ``base`` (replacing an earlier one of ours)."""
    for handler in list(base.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            base.removeHandler(handler)
            handler.close()
    handler = logging.StreamHandler(stream)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(HclogJSONFormatter(module))
    base.addHandler(handler)
    base.setLevel(numeric)


def configure(stream: TextIO, level: str = "debug", module: str = "soup") -> logging.Logger:
    """Send the package's logs as hclog JSON lines to ``stream``; returns ``module``'s logger.

    The handler sits on the top-level package logger (``soup`` for ``soup.plugin``),
    so every ``soup.*`` logger writes hclog lines; records do not propagate to the
    root logger (nothing else may write plain lines into the stream). Calling it
    again replaces the handler and level instead of adding one.
    """
    numeric, bad_level = _numeric(level)
    base = logging.getLogger(module.split(".", 1)[0])
    _install(base, stream, numeric, module)
    base.propagate = False
    logger = logging.getLogger(module)
    logger.setLevel(numeric)
    if bad_level is not None:
        logger.warning("%s; using debug", bad_level)
    return logger


def configure_all(stream: TextIO, level: str = "debug", module: str = "soup") -> logging.Logger:
    """Send every logger's records (the root logger's handler) as hclog JSON to ``stream``.

    A plugin's host reads its stderr: the app's own loggers must reach it as hclog
    lines too, not only soup's. Other handlers on the root logger are removed (they
    would write plain lines into the same stream). Returns ``module``'s logger.
    """
    numeric, bad_level = _numeric(level)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    _install(root, stream, numeric, module)
    soup_base = logging.getLogger(module.split(".", 1)[0])
    for handler in list(soup_base.handlers):  # an earlier configure(): propagate instead
        if getattr(handler, _HANDLER_MARK, False):
            soup_base.removeHandler(handler)
            handler.close()
    soup_base.propagate = True
    soup_base.setLevel(logging.NOTSET)
    logger = logging.getLogger(module)
    logger.setLevel(logging.NOTSET)
    if bad_level is not None:
        logger.warning("%s; using debug", bad_level)
    return logger


def parse_line(line: str) -> dict[str, object] | None:
    """The fields of an hclog JSON line, or ``None`` if a Go host would take it as plain text.

    Like go-plugin: any JSON object counts, provided ``@level``/``@message``/
    ``@timestamp`` (when present) are strings and the timestamp has six fractional
    digits.
    """
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    for key in ("@level", "@message", "@timestamp"):
        if key in data and not isinstance(data[key], str):
            return None
    stamp = data.get("@timestamp")
    if stamp is not None and _TIMESTAMP.fullmatch(stamp) is None:
        return None
    return data
