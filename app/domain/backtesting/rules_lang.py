"""The rules language of portfolio backtests (DOMAIN.md "Portfolio backtests" > rules).

An expression such as ``crosses_above(sma(close, 10), sma(close, 30)) and rsi(close, 14) < 70`` is
tokenized, parsed by recursive descent into a tree of the node classes below, type-checked, and
evaluated with numpy over whole bar arrays at once. Nothing is ever passed to ``eval``/``compile``
and no Python attribute or name lookup is driven by the text: names are looked up in the fixed
tables ``SERIES`` and ``FUNCTIONS``; anything else is a ``RuleError`` carrying the 0-based position of
the offending character in the text.

Grammar (lowest precedence first; comparisons do not chain)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | primary
    primary    := NUMBER | SERIES | FUNCTION "(" args ")" | "(" expr ")"

Types: every node is a number series or a boolean series. ``and``/``or``/``not`` take booleans,
comparisons and arithmetic take numbers; window lengths and shifts are integer literals (a window
computed from data would make the tree's cost depend on the data). Every function is causal (its
value at bar t uses bars <= t) and NaN during its warm-up; NaN compares false, so nothing fires before
an indicator exists.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from app.domain.backtesting.strategies.base import crosses_above, crosses_below, ema, rolling_std, sma
from app.domain.backtesting.strategies.rsi_reversion import rsi

MAX_LENGTH = 2_000
MAX_DEPTH = 40
MAX_WINDOW = 100_000

Kind = Literal["number", "bool"]
SERIES = ("open", "high", "low", "close", "volume")


class RuleError(ValueError):
    """A rule that cannot be parsed or type-checked; ``position`` is the 0-based character offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.reason = message
        self.position = position


# ------------------------------------------------------------------------------------------------ tree


@dataclass(frozen=True, slots=True)
class Number:
    value: float
    pos: int = field(compare=False)
    kind: Kind = "number"


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    pos: int = field(compare=False)
    kind: Kind = "number"


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Node, ...]
    pos: int = field(compare=False)
    kind: Kind


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-" | "not"
    operand: Node
    pos: int = field(compare=False)
    kind: Kind


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # + - * / < <= > >= == != and or
    left: Node
    right: Node
    pos: int = field(compare=False)
    kind: Kind


Node = Number | Series | Call | Unary | Binary
NODE_TYPES = (Number, Series, Call, Unary, Binary)


# ------------------------------------------------------------------------------------------------ functions


def _rolling_extreme(x: np.ndarray, n: int, accumulate: np.ufunc) -> np.ndarray:
    """Rolling max/min over ``n`` values in O(len) (van Herk / Gil-Werman: per-block prefix and
    suffix extremes), NaN during warm-up. Hand-written because the ready-made one
    (``scipy.ndimage.maximum_filter1d``) would add scipy as a dependency for one function."""
    size = x.size
    out = np.full(size, np.nan)
    if n < 1 or size < n:
        return out
    if n == 1:
        return x.astype(np.float64, copy=True)
    blocks = -(-size // n)
    fill = -np.inf if accumulate is np.maximum else np.inf
    padded = np.full(blocks * n, fill)
    padded[:size] = x
    grid = padded.reshape(blocks, n)
    prefix = accumulate.accumulate(grid, axis=1).ravel()
    suffix = accumulate.accumulate(grid[:, ::-1], axis=1)[:, ::-1].ravel()
    end = np.arange(n - 1, size)
    out[n - 1 :] = accumulate(suffix[end - n + 1], prefix[end])
    return out


def _shift(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    if n == 0:
        return x.copy()
    if n < x.size:
        out[n:] = x[:-n]
    return out


@dataclass(frozen=True, slots=True)
class Function:
    """A whitelisted function: argument kinds ("series" = number series or literal, "window" =
    integer literal in [min_window, MAX_WINDOW]) and the numpy implementation."""

    args: tuple[str, ...]
    result: Kind
    impl: Callable[..., np.ndarray]
    min_window: int = 1


def _window(impl: Callable[[np.ndarray, int], np.ndarray]) -> Callable[..., np.ndarray]:
    return lambda x, n: impl(np.asarray(x, dtype=np.float64), int(n))


FUNCTIONS: Mapping[str, Function] = {
    "sma": Function(("series", "window"), "number", _window(sma)),
    "ema": Function(("series", "window"), "number", _window(ema)),
    "rsi": Function(("series", "window"), "number", _window(rsi), min_window=2),
    "std": Function(("series", "window"), "number", _window(rolling_std), min_window=2),
    "highest": Function(
        ("series", "window"), "number", _window(lambda x, n: _rolling_extreme(x, n, np.maximum))
    ),
    "lowest": Function(
        ("series", "window"), "number", _window(lambda x, n: _rolling_extreme(x, n, np.minimum))
    ),
    "shift": Function(("series", "window"), "number", _window(_shift), min_window=0),
    "crosses_above": Function(("series", "series"), "bool", crosses_above),
    "crosses_below": Function(("series", "series"), "bool", crosses_below),
    "abs": Function(("series",), "number", np.abs),
    "min": Function(("series", "series"), "number", np.minimum),
    "max": Function(("series", "series"), "number", np.maximum),
}

_ARITHMETIC: Mapping[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
}
_COMPARISON: Mapping[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}
_LOGIC: Mapping[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "and": np.logical_and,
    "or": np.logical_or,
}


# ------------------------------------------------------------------------------------------------ tokens

_TOKEN = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|==|!=|[-+*/<>(),])"
)
_KEYWORDS = frozenset({"and", "or", "not"})


@dataclass(frozen=True, slots=True)
class Token:
    type: str  # number | name | keyword | op | end
    text: str
    pos: int = field(compare=False)


def tokenize(text: str) -> list[Token]:
    if not isinstance(text, str):
        raise RuleError("a rule must be a string", 0)
    if len(text) > MAX_LENGTH:
        raise RuleError(f"a rule may be at most {MAX_LENGTH} characters", MAX_LENGTH)
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise RuleError(f"unexpected character {text[pos]!r}", pos)
        kind = match.lastgroup or ""
        value = match.group()
        if kind == "name" and value in _KEYWORDS:
            kind = "keyword"
        if kind != "ws":
            tokens.append(Token(kind, value, pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# ------------------------------------------------------------------------------------------------ parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> Token:
        if self.tok.text != text or self.tok.type not in ("op", "keyword"):
            raise RuleError(f"expected {text!r}, found {self._describe(self.tok)}", self.tok.pos)
        return self.take()

    @staticmethod
    def _describe(tok: Token) -> str:
        return "the end of the rule" if tok.type == "end" else repr(tok.text)

    def _need(self, node: Node, kind: Kind, what: str) -> Node:
        if node.kind != kind:
            raise RuleError(
                f"{what} needs a {'true/false condition' if kind == 'bool' else 'number'}", node.pos
            )
        return node

    def parse(self) -> Node:
        node = self.expr()
        if self.tok.type != "end":
            raise RuleError(f"unexpected {self._describe(self.tok)}", self.tok.pos)
        return node

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise RuleError(f"a rule may nest at most {MAX_DEPTH} levels", self.tok.pos)
        node = self.and_expr()
        while self.tok.type == "keyword" and self.tok.text == "or":
            op = self.take()
            right = self.and_expr()
            node = Binary(
                "or", self._need(node, "bool", "`or`"), self._need(right, "bool", "`or`"), op.pos, "bool"
            )
        self.depth -= 1
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.tok.type == "keyword" and self.tok.text == "and":
            op = self.take()
            right = self.not_expr()
            node = Binary(
                "and", self._need(node, "bool", "`and`"), self._need(right, "bool", "`and`"), op.pos, "bool"
            )
        return node

    def not_expr(self) -> Node:
        if self.tok.type == "keyword" and self.tok.text == "not":
            op = self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise RuleError(f"a rule may nest at most {MAX_DEPTH} levels", op.pos)
            operand = self.not_expr()
            self.depth -= 1
            return Unary("not", self._need(operand, "bool", "`not`"), op.pos, "bool")
        return self.comparison()

    def comparison(self) -> Node:
        left = self.sum()
        if self.tok.type == "op" and self.tok.text in _COMPARISON:
            op = self.take()
            right = self.sum()
            what = f"`{op.text}`"
            node = Binary(
                op.text, self._need(left, "number", what), self._need(right, "number", what), op.pos, "bool"
            )
            if self.tok.type == "op" and self.tok.text in _COMPARISON:
                raise RuleError("comparisons do not chain; join them with `and`", self.tok.pos)
            return node
        return left

    def sum(self) -> Node:
        node = self.product()
        while self.tok.type == "op" and self.tok.text in ("+", "-"):
            op = self.take()
            right = self.product()
            what = f"`{op.text}`"
            node = Binary(
                op.text, self._need(node, "number", what), self._need(right, "number", what), op.pos, "number"
            )
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.tok.type == "op" and self.tok.text in ("*", "/"):
            op = self.take()
            right = self.unary()
            what = f"`{op.text}`"
            node = Binary(
                op.text, self._need(node, "number", what), self._need(right, "number", what), op.pos, "number"
            )
        return node

    def unary(self) -> Node:
        if self.tok.type == "op" and self.tok.text == "-":
            op = self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise RuleError(f"a rule may nest at most {MAX_DEPTH} levels", op.pos)
            operand = self.unary()
            self.depth -= 1
            if isinstance(operand, Number):
                return Number(-operand.value, op.pos)
            return Unary("-", self._need(operand, "number", "`-`"), op.pos, "number")
        return self.primary()

    def primary(self) -> Node:
        tok = self.tok
        if tok.type == "number":
            self.take()
            value = float(tok.text)
            if not math.isfinite(value):
                raise RuleError(f"number {tok.text} is out of range", tok.pos)
            return Number(value, tok.pos)
        if tok.type == "op" and tok.text == "(":
            self.take()
            node = self.expr()
            self.expect(")")
            return node
        if tok.type == "name":
            self.take()
            if tok.text in SERIES:
                if self.tok.type == "op" and self.tok.text == "(":
                    raise RuleError(f"`{tok.text}` is a price series, not a function", tok.pos)
                return Series(tok.text, tok.pos)
            function = FUNCTIONS.get(tok.text)
            if function is None:
                known = ", ".join((*SERIES, *FUNCTIONS))
                raise RuleError(f"unknown name `{tok.text}` (known: {known})", tok.pos)
            return self.call(tok, function)
        raise RuleError(
            f"expected a number, a price series or a function, found {self._describe(tok)}", tok.pos
        )

    def call(self, name: Token, function: Function) -> Node:
        self.expect("(")
        args: list[Node] = []
        if not (self.tok.type == "op" and self.tok.text == ")"):
            args.append(self.expr())
            while self.tok.type == "op" and self.tok.text == ",":
                self.take()
                args.append(self.expr())
        close = self.expect(")")
        if len(args) != len(function.args):
            raise RuleError(
                f"`{name.text}` takes {len(function.args)} argument(s), got {len(args)}",
                args[len(function.args)].pos if len(args) > len(function.args) else close.pos,
            )
        for i, (arg, expected) in enumerate(zip(args, function.args, strict=True)):
            what = f"argument {i + 1} of `{name.text}`"
            if expected == "window":
                if not isinstance(arg, Number) or arg.value != int(arg.value):
                    raise RuleError(f"{what} must be a whole number written in the rule", arg.pos)
                if not function.min_window <= arg.value <= MAX_WINDOW:
                    raise RuleError(f"{what} must be between {function.min_window} and {MAX_WINDOW}", arg.pos)
            else:
                self._need(arg, "number", what)
        return Call(name.text, tuple(args), name.pos, function.result)


def parse_rule(text: str) -> Node:
    """The checked tree of a rule, or ``RuleError`` naming the position of the first problem."""
    return _Parser(text).parse()


def parse_condition(text: str) -> Node:
    """A rule used as an entry or exit condition: it must be true/false, not a number."""
    node = parse_rule(text)
    if node.kind != "bool":
        raise RuleError(
            "an entry/exit rule must be a condition (a comparison, a cross, and/or/not)", node.pos
        )
    return node


def walk(node: Node) -> list[Node]:
    """Every node of a tree, parents before children."""
    out: list[Node] = [node]
    if isinstance(node, Call):
        for arg in node.args:
            out.extend(walk(arg))
    elif isinstance(node, Unary):
        out.extend(walk(node.operand))
    elif isinstance(node, Binary):
        out.extend(walk(node.left))
        out.extend(walk(node.right))
    return out


# ------------------------------------------------------------------------------------------------ evaluation


def evaluate(node: Node, series: Mapping[str, np.ndarray]) -> np.ndarray:
    """The node over 1-D arrays ``series[name]`` for each name in ``SERIES`` (all of one length):
    float64 for numbers, bool for conditions. Identical sub-trees are computed once."""
    length = int(np.asarray(series["close"]).shape[0])
    memo: dict[Node, np.ndarray] = {}

    def ev(n: Node) -> np.ndarray:
        cached = memo.get(n)
        if cached is not None:
            return cached
        if isinstance(n, Number):
            out = np.broadcast_to(np.float64(n.value), (length,))  # a read-only view, no allocation
        elif isinstance(n, Series):
            out = np.asarray(series[n.name], dtype=np.float64)
        elif isinstance(n, Call):
            function = FUNCTIONS[n.name]
            args = [
                int(a.value) if kind == "window" else ev(a)  # type: ignore[union-attr]
                for a, kind in zip(n.args, function.args, strict=True)
            ]
            out = function.impl(*args)
        elif isinstance(n, Unary):
            out = np.logical_not(ev(n.operand)) if n.op == "not" else np.negative(ev(n.operand))
        else:
            left, right = ev(n.left), ev(n.right)
            if n.op in _LOGIC:
                out = _LOGIC[n.op](left, right)
            elif n.op in _COMPARISON:
                out = _COMPARISON[n.op](left, right)
            else:
                out = _ARITHMETIC[n.op](left, right)
        memo[n] = out
        return out

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        result = ev(node)
    out = np.array(result, dtype=bool if node.kind == "bool" else np.float64, copy=None)
    return out if out.flags.writeable else out.copy()  # a bare literal is still a broadcast view
