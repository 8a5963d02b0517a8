"""The rules language: every function, precedence, errors with positions, and fuzzing."""

from __future__ import annotations

import builtins
import contextlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.backtesting.rules_lang import (
    FUNCTIONS,
    NODE_TYPES,
    SERIES,
    Binary,
    Call,
    Number,
    RuleError,
    Series,
    Unary,
    evaluate,
    parse_condition,
    parse_rule,
    walk,
)

X = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 8.0])


def data(close=X, **others):
    out = {name: np.asarray(others.get(name, close), dtype=np.float64) for name in SERIES}
    return out


def ev(text: str, **series) -> np.ndarray:
    return evaluate(parse_rule(text), data(**series))


def same(a, b) -> None:
    np.testing.assert_array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))


# --------------------------------------------------------------------------------------------
# Every function against a plain loop
# --------------------------------------------------------------------------------------------


def loop_window(x, n, f):
    return [f(x[i - n + 1 : i + 1]) if i >= n - 1 else math.nan for i in range(len(x))]


def test_window_functions_match_plain_loops():
    for n in (1, 2, 3, 5, 12):
        np.testing.assert_allclose(ev(f"sma(close, {n})"), loop_window(X, n, np.mean), rtol=1e-12)
        same(ev(f"highest(close, {n})"), loop_window(X, n, max))
        same(ev(f"lowest(close, {n})"), loop_window(X, n, min))
    for n in (2, 4):
        np.testing.assert_allclose(ev(f"std(close, {n})"), loop_window(X, n, np.std), rtol=1e-12, atol=1e-12)
    assert np.isnan(ev("sma(close, 13)")).all()


def test_rolling_extremes_on_long_random_series():
    rng = np.random.default_rng(1)
    x = rng.normal(size=1000)
    for n in (7, 64, 999):
        same(ev(f"highest(close, {n})", close=x), loop_window(x, n, max))
        same(ev(f"lowest(close, {n})", close=x), loop_window(x, n, min))


def test_ema_rsi_shift():
    # EMA seeded with the SMA of the first n values, alpha 2 / (n + 1).
    n, a = 3, 0.5
    want = [math.nan, math.nan, float(np.mean(X[:3]))]
    for v in X[3:]:
        want.append(want[-1] + a * (v - want[-1]))
    np.testing.assert_allclose(ev(f"ema(close, {n})"), want, rtol=1e-12)
    # Wilder's RSI over 2: gains/losses smoothed with alpha 1/2 after a 2-change mean seed.
    d = np.diff(X)
    g, lo = [float(np.mean(np.maximum(d[:2], 0)))], [float(np.mean(np.maximum(-d[:2], 0)))]
    for v in d[2:]:
        g.append(g[-1] + 0.5 * (max(v, 0) - g[-1]))
        lo.append(lo[-1] + 0.5 * (max(-v, 0) - lo[-1]))
    rsi = [math.nan, math.nan] + [100 - 100 / (1 + gg / ll) for gg, ll in zip(g, lo, strict=True)]
    np.testing.assert_allclose(ev("rsi(close, 2)"), rsi, rtol=1e-12)
    same(ev("shift(close, 2)"), [math.nan, math.nan, *X[:-2]])
    same(ev("shift(close, 0)"), X)


def test_crosses_abs_min_max_and_series_names():
    a = np.array([1.0, 2.0, 3.0, 2.0, 1.0])
    b = np.array([2.0, 2.0, 2.0, 2.0, 2.0])
    s = data(close=a, open=b)
    assert evaluate(parse_rule("crosses_above(close, open)"), s).tolist() == [0, 0, 0, 0, 0]  # 2 == 2 at t-1
    assert evaluate(parse_rule("crosses_above(close, 1.5)"), s).tolist() == [0, 1, 0, 0, 0]
    assert evaluate(parse_rule("crosses_below(close, 2.5)"), s).tolist() == [0, 0, 0, 1, 0]
    same(evaluate(parse_rule("abs(close - open)"), s), np.abs(a - b))
    same(evaluate(parse_rule("min(close, open)"), s), np.minimum(a, b))
    same(evaluate(parse_rule("max(close, 2.5)"), s), np.maximum(a, 2.5))
    cols = {name: np.full(3, float(i)) for i, name in enumerate(SERIES)}
    for i, name in enumerate(SERIES):
        same(evaluate(parse_rule(name), cols), [i] * 3)


# --------------------------------------------------------------------------------------------
# Precedence and logic
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("24 / 4 / 2", 3),
        ("-2 * 3", -6),
        ("- (2 + 1)", -3),
        ("2 - -1", 3),
        ("1.5e1 + .5", 15.5),
    ],
)
def test_arithmetic_precedence(text, value):
    assert ev(text).tolist() == [value] * X.size


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 < 2 or 2 < 1 and 2 < 1", True),  # and binds tighter than or
        ("(1 < 2 or 2 < 1) and 2 < 1", False),
        ("not 1 < 2 or 1 < 2", True),  # not binds tighter than or
        ("not (1 < 2 or 1 < 2)", False),
        ("not not 1 < 2", True),
        ("1 + 1 == 2 and 3 != 4 and 2 <= 2 and 3 >= 3 and 1 > 0", True),
    ],
)
def test_logic_precedence(text, value):
    assert parse_condition(text).kind == "bool"
    assert ev(text).tolist() == [value] * X.size


def test_nan_warmup_never_fires():
    out = ev("sma(close, 5) > 0 or not sma(close, 5) > 0")
    assert out[:4].tolist() == [False, True, True, True][:0] + [True] * 4  # not NaN > 0 is True
    assert not ev("sma(close, 5) > 0")[:4].any() and ev("sma(close, 5) > 0")[4:].all()


def test_identical_subtrees_are_one_node_for_the_memo():
    tree = parse_rule("sma(close, 10) > sma(close, 10)")
    assert isinstance(tree, Binary) and tree.left == tree.right and hash(tree.left) == hash(tree.right)


# --------------------------------------------------------------------------------------------
# Errors name their position
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("foo(close)", 0, "unknown name `foo`"),
        ("close > bar", 8, "unknown name `bar`"),
        ("sma(close, x)", 11, "unknown name `x`"),
        ("sma(close)", 9, "takes 2 argument"),
        ("sma(close, 10, 3)", 15, "takes 2 argument"),
        ("sma(close, 1.5)", 11, "whole number"),
        ("sma(close, close)", 11, "whole number"),
        ("rsi(close, 1)", 11, "between 2"),
        ("shift(close, -1)", 13, "between 0"),
        ("close >", 7, "the end of the rule"),
        ("(close > 1", 10, "expected ')'"),
        ("close > 1)", 9, "unexpected ')'"),
        ("1 < 2 < 3", 6, "do not chain"),
        ("close and 1 < 2", 0, "`and` needs a true/false"),
        ("not close", 4, "`not` needs a true/false"),
        ("(1 < 2) + 1", 3, "`+` needs a number"),  # a comparison is named by its operator
        ("close(1)", 0, "price series, not a function"),
        ("close > 1 ; x", 10, "unexpected character ';'"),
        ("close.__class__", 5, "unexpected character '.'"),
        ("__import__('os')", 11, "unexpected character"),
        ("", 0, "the end of the rule"),
        ("1e999 > 1", 0, "out of range"),
    ],
)
def test_errors_name_the_position(text, position, words):
    with pytest.raises(RuleError) as info:
        parse_condition(text)
    assert info.value.position == position
    assert words in str(info.value) and f"at position {position}" in str(info.value)


def test_an_entry_rule_must_be_a_condition():
    with pytest.raises(RuleError, match="must be a condition"):
        parse_condition("sma(close, 10)")


def test_length_and_depth_are_bounded():
    with pytest.raises(RuleError, match="at most"):
        parse_rule("1 + " * 1000 + "1")
    with pytest.raises(RuleError, match="nest"):
        parse_rule("(" * 60 + "1" + ")" * 60)
    with pytest.raises(RuleError, match="nest"):
        parse_rule("-" * 60 + "1 < 2")


# --------------------------------------------------------------------------------------------
# Fuzz: no input reaches anything outside the whitelist
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def no_dynamic_code():
    """eval/exec/compile must not run while a rule is parsed or evaluated (restored before asserting,
    because pytest and hypothesis use compile themselves)."""
    saved = {name: getattr(builtins, name) for name in ("eval", "exec", "compile")}

    def forbidden(*args, **kwargs):
        raise AssertionError("dynamic code reached from a rule")

    for name in saved:
        setattr(builtins, name, forbidden)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(builtins, name, value)


def check_tree(node) -> None:
    for n in walk(node):
        assert type(n) in NODE_TYPES
        if isinstance(n, Series):
            assert n.name in SERIES
        elif isinstance(n, Call):
            assert n.name in FUNCTIONS and len(n.args) == len(FUNCTIONS[n.name].args)
        elif isinstance(n, Unary):
            assert n.op in ("-", "not")
        elif isinstance(n, Binary):
            assert n.op in ("+", "-", "*", "/", "<", "<=", ">", ">=", "==", "!=", "and", "or")
        else:
            assert isinstance(n, Number) and math.isfinite(n.value)


ALPHABET = st.sampled_from(
    list("abcdefghijklmnopqrstuvwxyz_0123456789 ()+-*/<>=!.,'\"[]{}:;@#$%^&|~`\\\n\t")
    + [*SERIES, *FUNCTIONS, " and ", " or ", " not ", "__import__", "__class__", "lambda", "os", "exec"]
)
SERIES_ARRAYS = data(close=np.linspace(1.0, 3.0, 40))


def run_fuzz(text: str) -> None:
    error = out = None
    with no_dynamic_code():
        try:
            tree = parse_rule(text)
            out = evaluate(tree, SERIES_ARRAYS)
        except RuleError as exc:
            error = exc
    if error is not None:
        assert 0 <= error.position <= len(text)
        return
    check_tree(tree)
    assert out.shape == (40,) and out.dtype in (np.bool_, np.float64)


@settings(max_examples=800, deadline=None)
@given(st.lists(ALPHABET, max_size=30).map("".join))
def test_fuzz_token_soup_reaches_only_the_whitelist(text):
    run_fuzz(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_fuzz_arbitrary_unicode(text):
    run_fuzz(text)


def expressions() -> st.SearchStrategy[str]:
    """Well-formed and near-well-formed rules from the grammar, to reach deep into the parser."""
    leaf = st.one_of(
        st.sampled_from(SERIES),
        st.integers(0, 50).map(str),
        st.floats(-100, 100, allow_nan=False).map(lambda v: repr(round(v, 3))),
    )

    def extend(inner):
        return st.one_of(
            st.tuples(
                inner, st.sampled_from(["+", "-", "*", "/", "<", ">", "<=", "==", " and ", " or "]), inner
            ).map("".join),
            inner.map(lambda e: f"({e})"),
            inner.map(lambda e: f"not {e}"),
            inner.map(lambda e: f"-{e}"),
            st.tuples(st.sampled_from(list(FUNCTIONS)), inner, st.integers(-2, 30)).map(
                lambda t: f"{t[0]}({t[1]}, {t[2]})"
            ),
            st.tuples(st.sampled_from(["abs", "rsi", "sma"]), inner).map(lambda t: f"{t[0]}({t[1]})"),
        )

    return st.recursive(leaf, extend, max_leaves=12)


@settings(max_examples=800, deadline=None)
@given(expressions())
def test_fuzz_grammar_shaped_rules(text):
    run_fuzz(text)
