"""A plugin's stderr cut into log lines as go-plugin's host reads it (sans-IO).

go-plugin reads stderr with a ``bufio.Reader`` of ``PluginLogBufferSize`` bytes
(64 KiB by default) and ``ReadLine``: a line that fits is one log line; a longer one
comes in pieces of the buffer's size, each logged as it is, at debug, never parsed as
hclog JSON, the last piece being the rest of the line. :class:`LineSplitter` does the
same over bytes, except that a cut never splits a UTF-8 character: a piece ends at the
character boundary at or before the limit, and the character starts the next piece.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_BUFFER_SIZE", "MIN_BUFFER_SIZE", "LineSplitter", "Piece"]

DEFAULT_BUFFER_SIZE = 64 * 1024
"""go-plugin's default ``PluginLogBufferSize``."""
MIN_BUFFER_SIZE = 16
"""Go's ``bufio`` reader is never smaller: a smaller size reads 16 bytes, here too."""
_CR = 0x0D


@dataclass(frozen=True)
class Piece:
    """A line of the plugin's stderr (``whole``), or a piece of one longer than the limit."""

    text: str
    whole: bool


@dataclass
class LineSplitter:
    """Bytes in (:meth:`feed`, :meth:`end` at EOF), :class:`Piece` s out, in order.

    A line fits when its text and newline fit ``limit`` bytes (the buffer holds both);
    its newline (``\\n`` or ``\\r\\n``) is not part of the text. Holds at most
    ``limit`` bytes plus the last chunk fed.
    """

    limit: int = DEFAULT_BUFFER_SIZE
    _buffer: bytearray = field(default_factory=bytearray)
    _continued: bool = False
    """The last piece was not the end of its line."""

    def __post_init__(self) -> None:
        if self.limit <= 0:
            raise ValueError(f"line limit must be positive, got {self.limit}")
        self.limit = max(self.limit, MIN_BUFFER_SIZE)

    def feed(self, data: bytes) -> list[Piece]:
        """The lines and pieces ``data`` completes."""
        self._buffer += data
        out: list[Piece] = []
        while True:
            newline = self._buffer.find(b"\n", 0, self.limit)
            if newline >= 0:
                out.append(self._take(newline, end=True, skip=1))
            elif len(self._buffer) > self.limit:  # one byte more says if the cut splits
                out.append(self._prefix(_boundary(self._buffer, self.limit)))
            else:
                return out

    def end(self) -> list[Piece]:
        """What is left at EOF: the last line without its newline, or the last piece
        (also when it fills the buffer: ReadLine calls a full buffer a prefix)."""
        out = [self._prefix(self.limit)] if len(self._buffer) >= self.limit else []
        if self._buffer:
            out.append(self._take(len(self._buffer), end=True))
        return out

    def _prefix(self, cut: int) -> Piece:
        """The first ``cut`` bytes as a piece; a ``\r`` at the cut waits for the next
        one, as in ReadLine (so that a "\r\n" stays together)."""
        if self._buffer[cut - 1] == _CR:
            cut -= 1
        return self._take(cut, end=False)

    def _take(self, size: int, *, end: bool, skip: int = 0) -> Piece:
        raw = bytes(self._buffer[:size])
        del self._buffer[: size + skip]
        if skip:  # ended by a newline: "\r\n" ends it too
            raw = raw.removesuffix(b"\r")
        piece = Piece(raw.decode("utf-8", "replace"), whole=end and not self._continued)
        self._continued = not end
        return piece


def _boundary(data: bytearray, cut: int) -> int:
    """``cut``, moved back to the start of the UTF-8 character it would split.

    ``cut`` is at least 16, so the piece before it is never empty. In bytes that are no
    UTF-8 the cut stays (they are replaced when decoded anyway).
    """
    if data[cut] & 0xC0 != 0x80:
        return cut  # the byte after the cut starts a character: nothing is split
    for start in range(cut - 1, cut - 4, -1):
        lead = data[start]
        if lead & 0xC0 != 0x80:
            return start if _char_length(lead) > cut - start else cut
    return cut


def _char_length(lead: int) -> int:
    """The length of the UTF-8 character ``lead`` starts (1 for anything else)."""
    if lead & 0xE0 == 0xC0:
        return 2
    if lead & 0xF0 == 0xE0:
        return 3
    if lead & 0xF8 == 0xF0:
        return 4
    return 1
