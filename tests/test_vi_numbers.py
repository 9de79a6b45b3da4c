"""One number parser (engine.vi.parse_num): a figure means what a Vietnamese secretary meant by it,
and a form that could mean two different numbers is refused with a message, never guessed."""

from __future__ import annotations

import pytest

from engine.vi import parse_num


@pytest.mark.parametrize("text, value", [
    ("1200", 1200), ("1.200", 1200), ("1.200.000", 1_200_000), ("100.000", 100_000),   # dot = thousands
    ("1,5", 1.5), ("0,125", 0.125), ("1.200,5", 1200.5), ("1234,567", 1234.567),        # comma = decimal
    ("12,5 %", 12.5), ("62%", 62), ("1 200 000", 1_200_000), ("1\u00a0200,5", 1200.5),
    ("-3", -3), ("−1,5", -1.5), ("+2", 2),
    # international forms that have no Vietnamese reading
    ("1.5", 1.5), ("12.50", 12.5), ("0.200", 0.2), ("1.2345", 1.2345), ("1,200,000", 1_200_000), ("1,200.5", 1200.5),
])
def test_vietnamese_and_unambiguous_international_forms(text: str, value: float) -> None:
    assert parse_num(text) == pytest.approx(value)


@pytest.mark.parametrize("text, hint", [("1,200", "viết 1200 hoặc 1.200"), ("12,345", "12345"), ("1,000", "1000")])
def test_comma_before_three_digits_is_ambiguous_and_refused(text: str, hint: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_num(text)
    assert "không rõ nghĩa" in str(exc.value) and hint in str(exc.value)


@pytest.mark.parametrize("text", ["abc", "1.2.3", "1e3", "12 5", "", "%", "1.200.5", "1,2,3", "12.34.567", "inf", "nan"])
def test_garbage_is_refused_in_vietnamese(text: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_num(text)
    assert "không phải một số" in str(exc.value)


def test_percent_refused_where_not_allowed() -> None:
    with pytest.raises(ValueError, match="không tính bằng %"):
        parse_num("12%", percent=False)
