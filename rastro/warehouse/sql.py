"""Just enough of ClickHouse's lexer to route a request: what kind of statement it is, where
an INSERT's data begins, and whether a second statement hides after a semicolon.

The engine parses every statement itself; this only has to agree with it on strings, quoted
identifiers, comments and brackets, so that a `;` or `FORMAT` inside them is never taken for
a real one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from rastro.warehouse.errors import SYNTAX_ERROR, WarehouseError

# Statements whose result is rows (streamed to the client in the output format).
_ROW_KEYWORDS = frozenset(
    {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "CHECK"}
)
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")


def quote_literal(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Kind(Enum):
    ROWS = "rows"
    INSERT = "insert"
    COMMAND = "command"


@dataclass(frozen=True)
class Statement:
    kind: Kind
    sql: str  # the statement, without leading comments or a trailing ';' (INSERT: without data)
    keyword: str  # its first keyword, upper case ("SELECT", "USE", "SET", ...)
    format: str | None = None  # the FORMAT clause, if any (VALUES for an INSERT ... VALUES)
    data_start: int | None = None  # INSERT with data: offset of the data in the scanned text


class Incomplete(Exception):
    """The text ends before the statement's head does: read more of the request first."""


@dataclass(frozen=True)
class _Token:
    kind: str  # word, string, ident, open, close, semicolon, punct
    start: int
    end: int


def _skip_blank(text: str, pos: int, final: bool) -> int:
    """Skips whitespace and comments (`-- ...`, `# ...`, `#!...`, nested `/* ... */`)."""
    n = len(text)
    while pos < n:
        char = text[pos]
        if char.isspace():
            pos += 1
        elif text.startswith("--", pos) or (char == "#" and text[pos + 1 : pos + 2] in (" ", "!")):
            newline = text.find("\n", pos)
            if newline < 0:
                if not final:
                    raise Incomplete
                return n
            pos = newline + 1
        elif text.startswith("/*", pos):
            depth, pos = 1, pos + 2
            while depth:
                opening, closing = text.find("/*", pos), text.find("*/", pos)
                if closing < 0:
                    if not final:
                        raise Incomplete
                    raise WarehouseError(SYNTAX_ERROR, "Syntax error: unterminated comment")
                if 0 <= opening < closing:
                    depth, pos = depth + 1, opening + 2
                else:
                    depth, pos = depth - 1, closing + 2
        else:
            break
    return pos


def _read_token(text: str, pos: int, final: bool) -> _Token:
    char = text[pos]
    if char in "'\"`":
        end = pos + 1
        while True:
            end = min(
                (i for i in (text.find(char, end), text.find("\\", end)) if i >= 0), default=-1
            )
            if end < 0:
                if not final:
                    raise Incomplete
                raise WarehouseError(SYNTAX_ERROR, "Syntax error: unterminated quoted literal")
            # A backslash escapes the next character; a doubled quote stands for itself.
            if text[end] == "\\" or text[end + 1 : end + 2] == char:
                end += 2
            else:
                return _Token("string" if char == "'" else "ident", pos, end + 1)
    if char in _WORD_CHARS:
        end = pos + 1
        while end < len(text) and text[end] in _WORD_CHARS:
            end += 1
        if end == len(text) and not final:
            raise Incomplete  # the word may go on in the next chunk
        return _Token("word", pos, end)
    kind = {"(": "open", "[": "open", ")": "close", "]": "close", ";": "semicolon"}.get(char)
    return _Token(kind or "punct", pos, pos + 1)


class _TokenIterator:
    def __init__(self, text: str, pos: int, final: bool) -> None:
        self.text, self.pos, self.final = text, pos, final

    def __iter__(self) -> _TokenIterator:
        return self

    def __next__(self) -> _Token:
        self.pos = _skip_blank(self.text, self.pos, self.final)
        if self.pos >= len(self.text):
            raise StopIteration
        token = _read_token(self.text, self.pos, self.final)
        self.pos = token.end
        return token


def parse(text: str, final: bool = True) -> Statement:
    """Routes one statement. With `final=False` the text is only the start of the request and
    `Incomplete` means: read more. INSERT data after `FORMAT x` or `VALUES` is never scanned.
    """
    tokens = _TokenIterator(text, 0, final)
    first = next(tokens, None)
    if first is None:
        if not final:
            raise Incomplete
        raise WarehouseError(SYNTAX_ERROR, "Syntax error: empty query")
    keyword = text[first.start : first.end].upper() if first.kind == "word" else ""
    if keyword == "INSERT":
        insert = _parse_insert(text, first.start, tokens)
        if insert:
            return insert
        kind = Kind.COMMAND  # INSERT ... SELECT: the engine runs it whole
    elif keyword in _ROW_KEYWORDS or first.kind == "open":
        kind = Kind.ROWS
    else:
        kind = Kind.COMMAND
    if not final:
        raise Incomplete  # only an INSERT's data may be streamed: read the whole statement
    return _finish(text, first.start, tokens, kind, keyword)


def _parse_insert(text: str, start: int, tokens: _TokenIterator) -> Statement | None:
    """INSERT [INTO] [TABLE|FUNCTION] target ... FORMAT name | VALUES: where the data starts."""
    depth = 0
    seen_target = after_dot = False
    for token in tokens:
        word = text[token.start : token.end].upper() if token.kind == "word" else ""
        dotted, after_dot = after_dot, False
        if token.kind == "open":
            depth += 1
        elif token.kind == "close":
            depth -= 1
        elif depth or not word:
            if token.kind == "punct":  # `db.table`: the dot keeps us inside the target name
                after_dot = depth == 0 and text[token.start] == "."
            else:
                seen_target = seen_target or token.kind == "ident"
            continue
        elif dotted:
            continue  # `db.format`, `db.values`: a name after the dot, never a keyword
        elif word in ("INTO", "TABLE", "FUNCTION") and not seen_target:
            continue
        elif not seen_target:
            seen_target = True  # the table's own name, even if it is `format` or `values`
        elif word in ("SELECT", "WITH"):
            return None
        elif word == "FORMAT":
            name = next(tokens, None)
            if name is None and not tokens.final:
                raise Incomplete  # the format name is in the next chunk
            if name is None or name.kind != "word":
                raise WarehouseError(SYNTAX_ERROR, "Syntax error: FORMAT needs a format name")
            return _insert(
                text, start, token.start, text[name.start : name.end], name.end, tokens.final
            )
        elif word == "VALUES":
            return _insert(text, start, token.start, "Values", token.end, tokens.final)
    if not tokens.final:
        raise Incomplete
    return None


def _insert(text: str, start: int, clause: int, fmt: str, after: int, final: bool) -> Statement:
    # As ClickHouse does: the data starts after the first newline if there is one, or else
    # after the blanks (so binary data beginning with a blank byte is kept whole).
    pos = after
    while pos < len(text) and text[pos] in " \t\f":
        pos += 1
    if text.startswith("\r", pos):
        pos += 1
    if text.startswith("\n", pos):
        pos += 1
    if pos == len(text) and not final and fmt != "Values":
        raise Incomplete  # a newline may still come
    return Statement(Kind.INSERT, text[start:clause].rstrip(), "INSERT", fmt, pos)


def _finish(text: str, start: int, tokens: _TokenIterator, kind: Kind, keyword: str) -> Statement:
    depth = 0
    fmt = None
    end = len(text)
    previous_format = False
    for token in tokens:
        if token.kind == "open":
            depth += 1
        elif token.kind == "close":
            depth -= 1
        elif token.kind == "semicolon" and depth <= 0:
            rest = _skip_blank(text, token.end, True)
            if rest < len(text):
                raise WarehouseError(
                    SYNTAX_ERROR,
                    f"Syntax error (Multi-statements are not allowed): failed at position "
                    f"{token.start + 1}: {text[token.start : token.start + 40]!r}",
                )
            end = token.start
            break
        elif previous_format and token.kind == "word":
            fmt = text[token.start : token.end]
        word = text[token.start : token.end].upper() if token.kind == "word" else ""
        previous_format = depth == 0 and word == "FORMAT"
    return Statement(kind, text[start:end].rstrip(), keyword, fmt)
