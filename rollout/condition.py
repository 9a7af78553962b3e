"""A tiny, safe expression language for analysis success conditions.

A condition such as ``result < 0.05`` or ``result <= baseline + 0.01 and
result >= 0`` is parsed once (when the config loads) into a small tree and
evaluated against named numbers; nothing is ever handed to ``eval``. The
grammar, loosest binding first::

    expr    := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/") unary)*
    unary   := "-" unary | atom
    atom    := NUMBER | NAME | "true" | "false" | "(" expr ")"

NAME is one of the variables the caller allows (``result``, ``baseline``).
A condition must be a comparison or a boolean combination of comparisons, so a
bare number is refused instead of being read as "always true".
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import NoReturn

from rollout.errors import ConfigError

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
                    r"|([A-Za-z_][A-Za-z0-9_]*)|(<=|>=|==|!=|[<>()+\-*/]))")
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}
_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul,
}
_KEYWORDS = frozenset({"and", "or", "not", "true", "false"})


class ConditionError(ConfigError):
    """A success condition that does not parse, or that cannot be evaluated."""


@dataclass(frozen=True)
class _Node:
    op: str  # "num", "var", "neg", "not", "and", "or", an arithmetic or a comparison operator
    args: tuple[_Node, ...] = ()
    value: float | str = 0.0

    @property
    def boolean(self) -> bool:
        return self.op in _COMPARE or self.op in ("not", "and", "or", "bool")


@dataclass(frozen=True)
class Condition:
    """A parsed condition; :meth:`holds` evaluates it."""

    text: str
    tree: _Node
    names: frozenset[str]

    def holds(self, values: Mapping[str, float]) -> bool:
        """Whether the condition is true for ``values``. Every variable it uses
        must be given and finite; a missing or NaN value raises ConditionError
        (the caller reads that as inconclusive, never as a pass)."""
        for name in self.names:
            value = values.get(name)
            if value is None or math.isnan(value):
                raise ConditionError(f"condition {self.text!r}: {name} has no value")
        result = _eval(self.tree, values)
        return bool(result)


def _eval(node: _Node, values: Mapping[str, float]) -> float | bool:
    op = node.op
    if op == "num" or op == "bool":
        return node.value if op == "num" else bool(node.value)  # type: ignore[return-value]
    if op == "var":
        return values[str(node.value)]
    if op == "neg":
        return -_eval(node.args[0], values)
    if op == "not":
        return not _eval(node.args[0], values)
    if op == "and":
        return all(_eval(a, values) for a in node.args)
    if op == "or":
        return any(_eval(a, values) for a in node.args)
    left, right = (_eval(a, values) for a in node.args)
    if op in _COMPARE:
        return _COMPARE[op](float(left), float(right))
    if op == "/":
        if right == 0:
            raise ConditionError(f"division by zero in {node!r}")
        return float(left) / float(right)
    return _ARITH[op](float(left), float(right))


class _Parser:
    def __init__(self, text: str, allowed: Collection[str]) -> None:
        self.text = text
        self.allowed = allowed
        self.tokens = self._lex(text)
        self.pos = 0
        self.names: set[str] = set()

    def _lex(self, text: str) -> list[str]:
        tokens: list[str] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _TOKEN.match(text, pos)
            if match is None:
                self.fail(f"unexpected {text[pos:].strip()[:10]!r}")
            tokens.append(match.group(match.lastindex or 0))
            pos = match.end()
        return tokens

    def fail(self, why: str) -> NoReturn:
        raise ConditionError(
            f"condition {self.text!r}: {why}",
            hint=f"write a comparison such as 'result < 0.05' using {', '.join(self.allowed)}, "
                 "numbers, + - * /, < <= > >= == !=, and, or, not and parentheses",
        )

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            self.fail("ends too early")
        self.pos += 1
        return token

    def parse(self) -> Condition:
        if not self.tokens:
            self.fail("is empty")
        tree = self.expr()
        if self.peek() is not None:
            self.fail(f"unexpected {self.peek()!r}")
        if not tree.boolean:
            self.fail("is not a comparison")
        return Condition(self.text, tree, frozenset(self.names))

    def _chain(self, word: str, sub: Callable[[], _Node]) -> _Node:
        args = [sub()]
        while self.peek() == word:
            self.take()
            args.append(sub())
        if len(args) == 1:
            return args[0]
        for arg in args:
            if not arg.boolean:
                self.fail(f"'{word}' joins comparisons, not numbers")
        return _Node(word, tuple(args))

    def expr(self) -> _Node:
        return self._chain("or", self.conj)

    def conj(self) -> _Node:
        return self._chain("and", self.neg)

    def neg(self) -> _Node:
        if self.peek() == "not":
            self.take()
            inner = self.neg()
            if not inner.boolean:
                self.fail("'not' applies to a comparison")
            return _Node("not", (inner,))
        return self.compare()

    def compare(self) -> _Node:
        left = self.sum()
        op = self.peek()
        if op in _COMPARE:
            self.take()
            right = self.sum()
            if left.boolean or right.boolean:
                self.fail(f"'{op}' compares numbers")
            return _Node(op, (left, right))
        return left

    def sum(self) -> _Node:
        node = self.product()
        while self.peek() in ("+", "-"):
            node = _Node(self.take(), (self._number(node), self._number(self.product())))
        return node

    def product(self) -> _Node:
        node = self.unary()
        while self.peek() in ("*", "/"):
            node = _Node(self.take(), (self._number(node), self._number(self.unary())))
        return node

    def _number(self, node: _Node) -> _Node:
        if node.boolean:
            self.fail("arithmetic on a comparison")
        return node

    def unary(self) -> _Node:
        if self.peek() == "-":
            self.take()
            return _Node("neg", (self._number(self.unary()),))
        return self.atom()

    def atom(self) -> _Node:
        token = self.take()
        if token == "(":
            inner = self.expr()
            if self.take() != ")":
                self.fail("a '(' is not closed")
            return inner
        if token[0].isdigit() or token[0] == ".":
            return _Node("num", value=float(token))
        if token in ("true", "false"):
            return _Node("bool", value=float(token == "true"))
        if token[0].isalpha() or token[0] == "_":
            if token in _KEYWORDS or token not in self.allowed:
                self.fail(f"unknown name {token!r}")
            self.names.add(token)
            return _Node("var", value=token)
        self.fail(f"unexpected {token!r}")


def parse_condition(text: str, allowed: Collection[str] = ("result", "baseline")) -> Condition:
    """Parse ``text``; raises ConditionError (a ConfigError) naming what is wrong."""
    return _Parser(text, tuple(allowed)).parse()


__all__ = ["Condition", "ConditionError", "parse_condition"]
