"""soup.loglines: a plugin's stderr cut into lines as go-plugin's bufio.Reader.ReadLine does."""

from __future__ import annotations

import pytest

from soup.loglines import DEFAULT_BUFFER_SIZE, MIN_BUFFER_SIZE, LineSplitter, Piece


def _split(data: bytes, limit: int, *, chunk: int | None = None) -> list[Piece]:
    splitter = LineSplitter(limit)
    step = chunk or len(data) or 1
    out: list[Piece] = []
    for start in range(0, len(data), step):
        out += splitter.feed(data[start : start + step])
    return out + splitter.end()


def test_lines_that_fit_are_whole_however_the_bytes_arrive() -> None:
    data = b"one\r\ntwo\n\nthree"
    expected = [Piece("one", True), Piece("two", True), Piece("", True), Piece("three", True)]
    assert _split(data, 16) == expected
    assert _split(data, 16, chunk=1) == expected


def test_a_line_and_its_newline_must_fit_the_buffer() -> None:
    fits = b"x" * 15 + b"\n"  # 16 bytes with the newline: one line
    assert _split(fits, 16) == [Piece("x" * 15, True)]
    # 16 bytes of text: ReadLine gives the full buffer as a prefix, then an empty rest
    assert _split(b"y" * 16 + b"\n", 16) == [Piece("y" * 16, False), Piece("", False)]


def test_a_longer_line_comes_in_pieces_of_the_buffer_and_the_next_line_is_whole() -> None:
    line = bytes(range(65, 91)) * 3  # 78 bytes
    data = line + b"\nnext\n"
    pieces = [Piece(line[i : i + 20].decode(), False) for i in range(0, 78, 20)]
    assert _split(data, 20) == [*pieces, Piece("next", True)]
    assert _split(data, 20, chunk=7) == [*pieces, Piece("next", True)]
    assert [len(p.text) for p in pieces] == [20, 20, 20, 18]


def test_an_hclog_line_longer_than_the_buffer_is_pieces_not_a_line() -> None:
    record = b'{"@level":"error","@message":"' + b"m" * 40 + b'"}\n'
    pieces = _split(record, 32)
    assert not any(p.whole for p in pieces)
    assert "".join(p.text for p in pieces).encode() + b"\n" == record


@pytest.mark.parametrize(("width", "inside"), [(2, 1), (3, 1), (3, 2), (4, 1), (4, 2), (4, 3)])
def test_a_cut_never_splits_a_utf8_character(width: int, inside: int) -> None:
    char = {2: "é", 3: "€", 4: "🙂"}[width]
    assert len(char.encode()) == width
    text = "a" * (20 - inside) + char + "b" * 30  # the cut at 20 falls `inside` the char
    pieces = _split(text.encode() + b"\n", 20)
    assert pieces[0] == Piece("a" * (20 - inside), False)
    assert pieces[1].text.startswith(char)
    assert "".join(p.text for p in pieces) == text  # not a byte lost or replaced
    assert all(len(p.text.encode()) <= 20 for p in pieces)


def test_bytes_that_are_no_utf8_are_cut_at_the_limit() -> None:
    data = b"a" * 18 + b"\x80\x80\x80\x80" + b"\n"  # continuation bytes without a lead
    pieces = _split(data, 20)
    assert pieces[0] == Piece("a" * 18 + "\ufffd\ufffd", False)


def test_crlf_across_the_cut_stays_together_as_in_readline() -> None:
    data = b"z" * 19 + b"\r\nnext\n"  # the buffer is full at the \r
    assert _split(data, 20) == [Piece("z" * 19, False), Piece("", False), Piece("next", True)]


def test_at_eof_the_rest_is_a_line_or_the_last_piece() -> None:
    assert _split(b"no newline", 16) == [Piece("no newline", True)]
    assert _split(b"q" * 40, 16) == [
        Piece("q" * 16, False),
        Piece("q" * 16, False),
        Piece("q" * 8, False),
    ]
    assert LineSplitter(16).end() == []


def test_limits_below_16_read_16_as_gos_bufio_and_zero_is_refused() -> None:
    assert LineSplitter(1).limit == MIN_BUFFER_SIZE
    assert _split(b"w" * 20 + b"\n", 3)[0] == Piece("w" * 16, False)
    with pytest.raises(ValueError, match="line limit must be positive, got 0"):
        LineSplitter(0)
    assert LineSplitter().limit == DEFAULT_BUFFER_SIZE == 64 * 1024


# What Go 1.26's bufio.NewReaderSize(r, limit).ReadLine gave for these inputs (whole: not
# isPrefix and no prefix before), recorded once; a random differential run of 30000 inputs
# over a, b, \r and \n, fed in random chunks, matched it too.
_GO_READLINE = [
    (
        5,
        b"\raaabb\raaaab\raaa\ra\r\raaaaaaba\raa\raaaaaba\raabaaaa\naa\n",
        [("\raaabb\raaaab\raaa", False), ("\ra\r\raaaaaaba\raa", False),
         ("\raaaaaba\raabaaaa", False), ("", False), ("aa", True)],
    ),
    (16, b"aaaaaaa\rbaaaaaaa", [("aaaaaaa\rbaaaaaaa", False)]),
    (16, b"aaaaaaaaaaaaaaa\r", [("aaaaaaaaaaaaaaa", False), ("\r", False)]),
    (17, b"x" * 17 + b"\r\n\r\n", [("x" * 17, False), ("", False), ("", True)]),
    (
        20,
        b"\n\n" + b"y" * 45 + b"\r\nend",
        [("", True), ("", True), ("y" * 20, False), ("y" * 20, False), ("y" * 5, False),
         ("end", True)],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("limit", "data", "go"), _GO_READLINE)
@pytest.mark.parametrize("chunk", [1, 3, None])
def test_pieces_are_gos_readline(
    limit: int, data: bytes, go: list[tuple[str, bool]], chunk: int | None
) -> None:
    assert [(p.text, p.whole) for p in _split(data, limit, chunk=chunk)] == go
