"""soup.logs: hclog JSON lines a Go host can parse (and never crash on)."""

from __future__ import annotations

import datetime
import io
import json
import logging
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soup import logs

GO_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def _check_go_safe(line: str) -> dict[str, object]:
    """What a Go host requires: one JSON object, string @-fields, six-digit UTC timestamp."""
    assert "\n" not in line
    data = json.loads(line)
    assert isinstance(data, dict)
    for key in ("@level", "@message", "@timestamp", "@module"):
        assert isinstance(data[key], str), key
    assert GO_TIMESTAMP.fullmatch(str(data["@timestamp"]))
    assert data["@level"] in logs.LEVELS
    return data


def test_format_record_basic() -> None:
    when = datetime.datetime(2026, 11, 25, 13, 35, 32, 123456, tzinfo=datetime.UTC)
    line = logs.format_record("info", "plugin serving", module="soup.plugin", now=when, port=5)
    assert line == (
        '{"@level":"info","@message":"plugin serving","@module":"soup.plugin",'
        '"@timestamp":"2026-11-25T13:35:32.123456Z","port":5}'
    )


def test_timestamp_always_six_digits_utc() -> None:
    assert logs.format_timestamp(datetime.datetime(2026, 1, 2, 3, 4, 5)) == (
        "2026-01-02T03:04:05.000000Z"
    )
    tz = datetime.timezone(datetime.timedelta(hours=2))
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=tz)
    assert logs.format_timestamp(when) == "2026-01-02T01:04:05.000007Z"
    assert GO_TIMESTAMP.fullmatch(logs.format_timestamp())


@pytest.mark.parametrize(
    ("given_level", "expected"),
    [
        ("trace", "trace"),
        ("DEBUG", "debug"),
        ("info", "info"),
        ("warn", "warn"),
        ("warning", "warn"),
        ("Error", "error"),
        ("critical", "error"),
        ("bogus", "info"),
        (logs.TRACE, "trace"),
        (logging.DEBUG, "debug"),
        (logging.INFO, "info"),
        (logging.WARNING, "warn"),
        (logging.ERROR, "error"),
        (logging.CRITICAL, "error"),
        (1, "trace"),
        (15, "debug"),
    ],
)
def test_level_names(given_level: str | int, expected: str) -> None:
    assert logs.level_name(given_level) == expected


def test_python_level() -> None:
    assert logs.python_level("trace") == logs.TRACE == 5
    assert logs.python_level("WARN") == logging.WARNING
    with pytest.raises(ValueError, match="trace, debug, info, warn, error"):
        logs.python_level("loud")
    assert logging.getLevelName(5) == "TRACE"


class Unserialisable:
    def __str__(self) -> str:
        return "<custom thing>"


class BrokenStr:
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_non_serialisable_values_are_strd() -> None:
    line = logs.format_record(
        "debug",
        "m",
        obj=Unserialisable(),
        raw=b"\x00\xff",
        nested={"a": [1, Unserialisable()], 2: {"x"}},
        nan=float("nan"),
        inf=float("-inf"),
        broken=BrokenStr(),
        path=pathlib.Path("/tmp/x"),
    )
    data = _check_go_safe(line)
    assert data["obj"] == "<custom thing>"
    assert data["raw"] == str(b"\x00\xff")
    assert data["nested"] == {"a": [1, "<custom thing>"], "2": "{'x'}"}
    assert data["nan"] == "nan"
    assert data["inf"] == "-inf"
    assert data["broken"] == "<unprintable BrokenStr>"
    assert data["path"] == "/tmp/x"


def test_reserved_field_names_cannot_clobber() -> None:
    fields: dict[str, Any] = {"@level": 3, "@message": None, "@timestamp": 1.5, "@module": []}
    data = _check_go_safe(logs.format_record("info", "real", **fields))
    assert data["@message"] == "real"
    assert data["@level"] == "info"
    assert data["level"] == 3
    assert data["message"] is None
    assert data["timestamp"] == 1.5
    assert data["module"] == []


def test_message_and_level_forced_to_strings() -> None:
    data = _check_go_safe(logs.format_record(7, 12345))  # type: ignore[arg-type]
    assert data["@message"] == "12345"


def test_deep_nesting_is_bounded() -> None:
    deep: list[object] = []
    cur = deep
    for _ in range(50):
        nxt: list[object] = []
        cur.append(nxt)
        cur = nxt
    cyclic: list[object] = []
    cyclic.append(cyclic)
    _check_go_safe(logs.format_record("info", "m", deep=deep, cyclic=cyclic))


@given(
    st.text(),
    st.sampled_from(["trace", "debug", "info", "warn", "error", "x"]),
    st.dictionaries(
        # format_record's own keyword names cannot be field names.
        st.text(min_size=1, max_size=10).filter(lambda k: k not in ("module", "now")),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
            max_leaves=8,
        ),
        max_size=5,
    ),
)
def test_property_always_go_safe(message: str, level: str, fields: dict[str, Any]) -> None:
    line = logs.format_record(level, message, **fields)
    data = _check_go_safe(line)
    assert data["@message"] == message
    assert logs.parse_line(line) == data


# -- formatter, configure


@pytest.fixture
def clean_soup_loggers() -> Iterator[None]:
    names = ["soup", "soup.plugin", "soup.lab.kv", "testmod", "testmod.sub"]
    loggers = {n: logging.getLogger(n) for n in names}
    saved = {n: (list(lg.handlers), lg.level, lg.propagate) for n, lg in loggers.items()}
    yield
    for n, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(n)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [_check_go_safe(line) for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("clean_soup_loggers")
def test_configure_and_levels() -> None:
    stream = io.StringIO()
    log = logs.configure(stream, level="trace", module="soup.plugin")
    assert log.name == "soup.plugin"
    log.log(logs.TRACE, "t")
    log.debug("d %s", "arg")
    log.info("i", extra={"network": "unix", "obj": Unserialisable()})
    log.warning("w")
    log.error("e")
    log.critical("c")
    logging.getLogger("soup.lab.kv").info("from kv")
    lines = _lines(stream)
    assert [(d["@level"], d["@message"]) for d in lines] == [
        ("trace", "t"),
        ("debug", "d arg"),
        ("info", "i"),
        ("warn", "w"),
        ("error", "e"),
        ("error", "c"),
        ("info", "from kv"),
    ]
    assert lines[2]["network"] == "unix"
    assert lines[2]["obj"] == "<custom thing>"
    assert lines[0]["@module"] == "soup.plugin"
    assert lines[-1]["@module"] == "soup.lab.kv"
    # No LogRecord internals leak as fields.
    assert set(lines[1]) == {"@level", "@message", "@module", "@timestamp"}


@pytest.mark.usefixtures("clean_soup_loggers")
def test_configure_is_idempotent_and_filters_level() -> None:
    first, second = io.StringIO(), io.StringIO()
    logs.configure(first, level="debug", module="soup.plugin")
    log = logs.configure(second, level="warn", module="soup.plugin")
    log.info("dropped")
    log.warning("kept")
    assert first.getvalue() == ""
    assert [d["@message"] for d in _lines(second)] == ["kept"]
    marked = [h for h in logging.getLogger("soup").handlers if hasattr(h, "_soup_hclog_handler")]
    assert len(marked) == 1


@pytest.mark.usefixtures("clean_soup_loggers")
def test_configure_bad_level_falls_back_to_debug() -> None:
    stream = io.StringIO()
    log = logs.configure(stream, level="chatty", module="testmod.sub")
    log.debug("still logged")
    lines = _lines(stream)
    assert lines[0]["@level"] == "warn"
    assert "unknown log level 'chatty'" in str(lines[0]["@message"])
    assert lines[1]["@message"] == "still logged"
    assert lines[1]["@module"] == "testmod.sub"


@pytest.mark.usefixtures("clean_soup_loggers")
def test_exceptions_and_bad_format_args() -> None:
    stream = io.StringIO()
    log = logs.configure(stream, module="soup")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    log.info("bad %d", "not a number")
    lines = _lines(stream)
    assert lines[0]["@level"] == "error"
    assert "ValueError: boom" in str(lines[0]["exception"])
    assert "log message formatting failed" in str(lines[1]["@message"])


def test_formatter_root_logger_uses_module() -> None:
    record = logging.LogRecord("root", logging.INFO, __file__, 1, "hi", None, None)
    data = _check_go_safe(logs.HclogJSONFormatter("mymod").format(record))
    assert data["@module"] == "mymod"
    assert GO_TIMESTAMP.fullmatch(str(data["@timestamp"]))


def test_formatter_extra_named_like_format_record_kwargs() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hi", None, None)
    record.__dict__.update({"level": 1, "now": 2, "fields": 3})
    data = _check_go_safe(logs.HclogJSONFormatter().format(record))
    assert (data["level"], data["now"], data["fields"]) == (1, 2, 3)


# -- parse_line (the host side's view)


@pytest.mark.parametrize(
    "line",
    [
        "plain text",
        "[INFO] something",
        "",
        "[1, 2]",
        "{not json",
        '{"@level": 3, "@message": "m"}',
        '{"@message": ["m"]}',
        '{"@timestamp": 1}',
        '{"@level": "info", "@message": "m", "@timestamp": "2026-11-25T13:35:32.123Z"}',
        '{"@level": "info", "@message": "m", "@timestamp": "2026-11-25 13:35:32.123456Z"}',
        "[" * 100000,
    ],
)
def test_parse_line_rejects(line: str) -> None:
    assert logs.parse_line(line) is None


def test_parse_line_accepts() -> None:
    assert logs.parse_line("{}") == {}
    line = '{"@level":"INFO","@message":"m","@timestamp":"2026-11-25T13:35:32.123456+02:00","k":1}'
    assert logs.parse_line(line + "\r\n") == {
        "@level": "INFO",
        "@message": "m",
        "@timestamp": "2026-11-25T13:35:32.123456+02:00",
        "k": 1,
    }
