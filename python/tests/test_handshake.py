"""soup.handshake: line format/parse (Go host rules), version negotiation, cookie, host env."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soup import handshake
from soup.handshake import (
    CookieError,
    Handshake,
    HandshakeConfig,
    HandshakeError,
    HandshakeLineError,
    VersionNegotiationError,
    check_cookie,
    format_line,
    host_env,
    negotiate_version,
    parse_line,
)

# A DER-looking blob (ASN.1 SEQUENCE) long enough that its base64 exceeds 50 characters.
CERT = b"\x30\x82\x01\x00" + bytes(range(201))
CERT_B64 = base64.b64encode(CERT).decode()  # padded: len(CERT) % 3 != 0
assert CERT_B64.endswith("=")


def parse(line: bytes | str, **kw: object) -> Handshake:
    return parse_line(line, app_versions=kw.pop("app_versions", (1,)), **kw)  # type: ignore[arg-type]


def rejected(line: bytes | str, **kw: object) -> str:
    """The message of the ``HandshakeLineError`` that ``parse(line, **kw)`` must raise."""
    with pytest.raises(HandshakeLineError) as info:
        parse(line, **kw)
    return str(info.value)


# -- format


def test_format_plain_line() -> None:
    h = Handshake(1, 1, "unix", "/tmp/plugin.sock", "grpc")
    assert format_line(h) == b"1|1|unix|/tmp/plugin.sock|grpc|\n"


def test_format_with_cert_has_no_padding() -> None:
    h = Handshake(1, 1, "tcp", "127.0.0.1:1234", "grpc", server_cert_der=CERT)
    line = format_line(h)
    assert line == f"1|1|tcp|127.0.0.1:1234|grpc|{CERT_B64.rstrip('=')}\n".encode()
    assert b"=" not in line


def test_format_multiplex_only_when_true() -> None:
    base = Handshake(1, 1, "unix", "/s", "grpc")
    assert format_line(Handshake(1, 1, "unix", "/s", "grpc", multiplex=True)).endswith(
        b"|grpc||true\n"
    )
    assert format_line(Handshake(1, 1, "unix", "/s", "grpc", multiplex=False)) == format_line(base)


@pytest.mark.parametrize("field", ["network", "address", "protocol"])
@pytest.mark.parametrize("bad", ["a|b", "a\nb", "a\rb"])
def test_format_rejects_separator_in_fields(field: str, bad: str) -> None:
    values = {"network": "unix", "address": "/s", "protocol": "grpc", field: bad}
    with pytest.raises(ValueError, match=field):
        format_line(Handshake(1, 1, values["network"], values["address"], values["protocol"]))


def test_format_rejects_too_short_cert() -> None:
    with pytest.raises(ValueError, match="too short"):
        format_line(Handshake(1, 1, "unix", "/s", "grpc", server_cert_der=b"\x30" * 10))


# -- parse: accepted forms


def test_parse_plain() -> None:
    assert parse(b"1|1|unix|/tmp/x|grpc|\n") == Handshake(1, 1, "unix", "/tmp/x", "grpc")


@pytest.mark.parametrize(
    "line",
    [
        b"1|1|unix|/tmp/x|grpc|\r\n",
        b"  1|1|unix|/tmp/x|grpc|  \t\n",
        "1|1|unix|/tmp/x|grpc|\u00a0\n",
        "1|1|unix|/tmp/x|grpc",
    ],
)
def test_parse_trims_whitespace(line: bytes | str) -> None:
    assert parse(line) == Handshake(1, 1, "unix", "/tmp/x", "grpc")


def test_parse_tcp_with_unpadded_cert() -> None:
    h = parse(f"1|1|tcp|127.0.0.1:5000|grpc|{CERT_B64.rstrip('=')}\n")
    assert h.server_cert_der == CERT
    assert h.network == "tcp"
    assert h.address == "127.0.0.1:5000"


def test_reject_padded_cert_like_go() -> None:
    # A Go host decodes field 6 with RawStdEncoding: "=" is illegal there.
    padded = CERT_B64.rstrip("=") + "=" * (-len(CERT_B64.rstrip("=")) % 4)
    assert padded.endswith("=")
    text = rejected(f"1|1|tcp|127.0.0.1:5000|grpc|{padded}")
    assert f"illegal base64 data at input byte {padded.index('=')}" in text


def test_parse_short_field6_is_ignored_like_go() -> None:
    # Exactly 50 characters: a Go host does not look at it (even though it is not base64).
    junk = "!" * 50
    assert parse(f"1|1|unix|/s|grpc|{junk}").server_cert_der is None


def test_parse_multiplex_field() -> None:
    assert parse("1|1|unix|/s|grpc||true").multiplex is True
    assert parse("1|1|unix|/s|grpc||false").multiplex is False
    assert parse("1|1|unix|/s|grpc|").multiplex is None


def test_parse_selects_from_several_app_versions() -> None:
    assert parse("1|6|unix|/s|grpc|", app_versions=(5, 6)).app_version == 6


def test_parse_other_protocols_when_allowed() -> None:
    h = parse_line("1|1|unix|/s|netrpc|", app_versions=[1], protocols=("grpc", "netrpc"))
    assert h.protocol == "netrpc"


def test_parse_missing_protocol_defaults_to_netrpc_like_go() -> None:
    h = parse_line("1|1|unix|/s", app_versions=[1], protocols=("netrpc",))
    assert h.protocol == "netrpc"


def test_parse_ignores_fields_beyond_seven() -> None:
    assert parse("1|1|unix|/s|grpc||true|future").multiplex is True


# -- parse: every rejection path, with its message


def test_reject_too_few_fields() -> None:
    text = rejected(b"hello world\n")
    assert text.startswith("Unrecognized remote plugin message: hello world")
    assert "expected CORE|APP|NETWORK|ADDRESS|PROTOCOL" in text
    assert "got 1 field)" in text


def test_reject_empty_line() -> None:
    with pytest.raises(HandshakeLineError, match="Unrecognized remote plugin message"):
        parse(b"\n")


def test_reject_three_fields() -> None:
    with pytest.raises(HandshakeLineError, match=r"got 3 fields"):
        parse("1|1|unix")


def test_reject_long_garbage_is_quoted_truncated() -> None:
    text = rejected("x" * 5000)
    assert "5000 characters in all" in text
    assert len(text) < 1000


def test_reject_non_utf8() -> None:
    text = rejected(b"1|1|unix|/tmp/\xff|grpc|")
    assert "not valid UTF-8" in text
    assert "Unrecognized remote plugin message" in text


@pytest.mark.parametrize("core", ["x", "", "1 ", "1.0", "1_0", "\u0661"])
def test_reject_core_not_integer(core: str) -> None:
    text = rejected(f"{core}|1|unix|/s|grpc|")
    assert "error parsing core protocol version" in text
    assert "field 1" in text
    assert "expected the integer 1" in text


@pytest.mark.parametrize("core", ["2", "0", "-1", "+2"])
def test_reject_core_version(core: str) -> None:
    text = rejected(f"{core}|1|unix|/s|grpc|")
    assert text.startswith(
        f"incompatible core API version with plugin. Plugin version: {core}, Core version: 1"
    )
    assert "field 1 must be 1" in text


def test_core_with_plus_sign_accepted_like_go_atoi() -> None:
    assert parse("+1|1|unix|/s|grpc|").core_version == 1


def test_reject_app_version_not_integer() -> None:
    text = rejected("1|v1|unix|/s|grpc|", app_versions=(1, 2))
    assert "error parsing protocol version" in text
    assert "'v1'" in text
    assert "one of [1 2]" in text


def test_reject_app_version_mismatch() -> None:
    assert rejected("1|3|unix|/s|grpc|", app_versions=(2, 1)) == (
        "incompatible API version with plugin. Plugin version: 3, Client versions: [1 2]"
    )


@pytest.mark.parametrize("network", ["udp", "UNIX", "", "tcp4"])
def test_reject_unknown_network(network: str) -> None:
    text = rejected(f"1|1|{network}|/s|grpc|")
    assert f"unknown network type {network!r}" in text
    assert "expected one of: unix, tcp" in text


def test_reject_empty_address() -> None:
    with pytest.raises(HandshakeLineError, match=r"empty address in field 4"):
        parse("1|1|unix||grpc|")


def test_reject_protocol_not_allowed() -> None:
    assert rejected("1|1|unix|/s|netrpc|") == (
        'unsupported plugin protocol "netrpc". Supported: [grpc]'
    )


def test_reject_missing_protocol_field() -> None:
    text = rejected("1|1|unix|/s")
    assert 'unsupported plugin protocol "netrpc"' in text
    assert "Supported: [grpc]" in text


@pytest.mark.parametrize(
    ("field6", "reason"),
    [
        ("!" * 60, "outside the base64 alphabet: '!'"),
        ("A" * 61, "truncated data"),
        ("A" * 57 + "=" * 3, "illegal base64 data at input byte 57"),
        ("A" * 50 + "=" + "A" * 5, "illegal base64 data at input byte 50"),
        ("A" * 58 + "=", "illegal base64 data at input byte 58"),
        ("-" * 60, "outside the base64 alphabet: '-'"),
        ("é" * 30, "outside the base64 alphabet"),
    ],
)
def test_reject_bad_base64_cert(field6: str, reason: str) -> None:
    text = rejected(f"1|1|unix|/s|grpc|{field6}")
    assert text.startswith("error parsing server cert: field 6 is not valid base64")
    assert reason in text
    assert "expected the plugin's DER certificate in standard base64" in text


def test_reject_cert_that_is_not_der() -> None:
    blob = base64.b64encode(b"\x04" + bytes(60)).decode().rstrip("=")
    text = rejected(f"1|1|unix|/s|grpc|{blob}")
    assert "field 6 does not decode to a DER certificate" in text
    assert "first byte 0x04" in text


@pytest.mark.parametrize("mux", ["True", "1", "yes", ""])
def test_parse_ignores_field_7_that_is_not_a_boolean_like_go(mux: str) -> None:
    # go-plugin's host reads field 7 only when it asked for multiplexing (soup never does).
    assert parse(f"1|1|unix|/s|grpc||{mux}").multiplex is None


# -- properties

networks = st.sampled_from(["unix", "tcp"])
field_text = st.text(
    alphabet=st.characters(exclude_characters="|\r\n", exclude_categories=["Cs"]),
    min_size=1,
    max_size=60,
).filter(lambda s: s == s.strip(handshake._GO_SPACE))
certs = st.none() | st.binary(min_size=38, max_size=600).map(lambda b: b"\x30" + b)


@st.composite
def handshakes(draw: st.DrawFn) -> Handshake:
    return Handshake(
        core_version=1,
        app_version=draw(st.integers(min_value=-(2**40), max_value=2**40)),
        network=draw(networks),
        address=draw(field_text),
        protocol=draw(st.sampled_from(["grpc", "netrpc"])),
        server_cert_der=draw(certs),
        multiplex=draw(st.sampled_from([None, True])),
    )


@given(handshakes())
def test_round_trip(h: Handshake) -> None:
    line = format_line(h)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert b"=" not in line.split(b"|")[5]
    assert parse_line(line, app_versions=[h.app_version], protocols=("grpc", "netrpc")) == h
    # The str form parses the same.
    assert (
        parse_line(line.decode(), app_versions=[h.app_version], protocols=["grpc", "netrpc"]) == h
    )


@given(handshakes())
def test_round_trip_multiplex_false_reads_back_as_absent(h: Handshake) -> None:
    h2 = h._replace(multiplex=False)
    parsed = parse_line(format_line(h2), app_versions=[h.app_version], protocols=["grpc", "netrpc"])
    assert parsed.multiplex is None


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_fuzz_bytes_only_raise_handshake_errors(data: bytes) -> None:
    try:
        h = parse_line(data, app_versions=(1, 2, 3))
    except HandshakeError:
        return
    assert h.core_version == 1
    assert h.protocol == "grpc"


@settings(max_examples=500)
@given(st.text(max_size=300))
def test_fuzz_text_only_raise_handshake_errors(text: str) -> None:
    with contextlib.suppress(HandshakeError):
        parse_line(text, app_versions=(1,), protocols=("grpc",))


field_or_junk = st.sampled_from(
    ["1", "2", "unix", "tcp", "grpc", "", "true", "false", "/s", "x", CERT_B64, "A" * 51]
) | st.text(max_size=70)


@settings(max_examples=500)
@given(st.lists(field_or_junk, min_size=0, max_size=9))
def test_fuzz_structured_fields(fields: list[str]) -> None:
    # Near-valid lines reach the deeper checks; still only HandshakeError escapes.
    try:
        h = parse_line("|".join(fields), app_versions=(1, 2))
    except HandshakeError:
        return
    assert h.network in ("unix", "tcp")
    assert h.app_version in (1, 2)


# -- negotiate_version

version_sets = st.sets(st.integers(min_value=0, max_value=50), min_size=1, max_size=8)


@given(version_sets, st.lists(st.integers(min_value=0, max_value=50), max_size=8))
def test_negotiate_properties(supported: set[int], offered: list[int]) -> None:
    env = ",".join(str(v) for v in offered)
    chosen = negotiate_version(env, supported)
    assert chosen in supported
    common = supported & set(offered)
    if common:
        assert chosen == max(common)
    else:
        assert chosen == min(supported)


@given(version_sets, st.text(max_size=40))
def test_negotiate_never_fails_on_garbage(supported: set[int], env: str) -> None:
    assert negotiate_version(env, supported) in supported


@pytest.mark.parametrize(
    ("env", "supported", "expected"),
    [
        (None, (1,), 1),
        ("", (1, 2), 1),
        ("1", (1,), 1),
        ("5,6", (4, 5, 6, 7), 6),
        ("6,5", (5, 6), 6),
        ("x,2,,3", (2, 3), 3),
        (" 3,2", (2, 3), 2),  # Go's Atoi does not trim: " 3" is skipped
        ("9", (2, 3), 2),
        ("-1,+3", (3,), 3),
    ],
)
def test_negotiate_examples(env: str | None, supported: tuple[int, ...], expected: int) -> None:
    assert negotiate_version(env, supported) == expected


def test_negotiate_without_supported_versions() -> None:
    with pytest.raises(VersionNegotiationError, match="no app protocol version"):
        negotiate_version("1", ())


# -- cookie and env


def test_check_cookie_ok() -> None:
    check_cookie({"BASIC_PLUGIN": "hello", "X": "y"}, HandshakeConfig())


@pytest.mark.parametrize("env", [{}, {"BASIC_PLUGIN": "hello2"}, {"BASIC_PLUGIN": ""}])
def test_check_cookie_rejects(env: dict[str, str]) -> None:
    with pytest.raises(CookieError) as info:
        check_cookie(env, HandshakeConfig())
    assert str(info.value) == handshake.NOT_A_PLUGIN_MESSAGE
    assert isinstance(info.value, HandshakeError)


def test_not_a_plugin_message_text() -> None:
    # go-plugin's server.go prints exactly these three lines.
    assert handshake.NOT_A_PLUGIN_MESSAGE.splitlines() == [
        "This binary is a plugin. These are not meant to be executed directly.",
        "Please execute the program that consumes these plugins, which will",
        "load any plugins automatically",
    ]


def test_check_cookie_misconfigured() -> None:
    with pytest.raises(ValueError, match="magic cookie"):
        check_cookie({"": ""}, HandshakeConfig(cookie_key="", cookie_value=""))


def test_host_env_auto_mtls() -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    env = host_env(HandshakeConfig(app_versions=(5, 6)), client_cert_pem=pem)
    assert env == {
        "BASIC_PLUGIN": "hello",
        "PLUGIN_PROTOCOL_VERSIONS": "5,6",
        "PLUGIN_MIN_PORT": "10000",
        "PLUGIN_MAX_PORT": "25000",
        "PLUGIN_CLIENT_CERT": pem.decode(),
    }


def test_host_env_plain_with_socket_dir() -> None:
    env = host_env(HandshakeConfig(), client_cert_pem=None, unix_socket_dir="/run/x")
    assert "PLUGIN_CLIENT_CERT" not in env
    assert env["PLUGIN_UNIX_SOCKET_DIR"] == "/run/x"
    assert env["PLUGIN_PROTOCOL_VERSIONS"] == "1"


def test_host_env_and_negotiation_agree() -> None:
    config = HandshakeConfig(app_versions=(1, 2, 3))
    env = host_env(config, client_cert_pem=None)
    assert negotiate_version(env["PLUGIN_PROTOCOL_VERSIONS"], (2, 3, 4)) == 3
    check_cookie(env, config)


# -- numbers a Go host cannot parse either (strconv.Atoi: out of range), no traceback

HUGE = "9" * 5000


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (f"{HUGE}|1|unix|/s|grpc|", "error parsing core protocol version: field 1 is"),
        (f"1|{HUGE}|unix|/s|grpc|", "error parsing protocol version: field 2 is"),
        ("9223372036854775808|1|unix|/s|grpc|", "error parsing core protocol version"),
    ],
)
def test_reject_numbers_out_of_int64_range(line: str, reason: str) -> None:
    text = rejected(line)
    assert reason in text
    assert "characters in all" in text or "9223372036854775808" in text


def test_largest_int64_is_a_number_like_go() -> None:
    text = rejected("9223372036854775807|1|unix|/s|grpc|")
    assert "incompatible core API version with plugin" in text


def test_negotiate_skips_a_5000_digit_entry() -> None:
    assert negotiate_version(f"{HUGE},1", (1, 2)) == 1
