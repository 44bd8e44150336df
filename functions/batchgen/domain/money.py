"""Credit arithmetic: exact decimals with at most two places, never binary floats."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("1000000000")  # far above any real balance, far below DynamoDB's 38 digits


def to_credits(value: object) -> Decimal:
    """Parse a credit amount; more than two decimals is an error, not a rounding."""
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"not a number: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError("credit amounts must be finite")
    if abs(amount) > MAX_AMOUNT:
        raise ValueError(f"credit amounts are at most {MAX_AMOUNT:,}")
    if amount != amount.quantize(CENT, rounding=ROUND_HALF_UP):
        raise ValueError("credit amounts have at most two decimals")
    return normalize(amount)


def normalize(amount: Decimal) -> Decimal:
    """Canonical form: 2.50 -> 2.5, 4.00 -> 4 (what JSON clients expect to see)."""
    quantized = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    return quantized.to_integral_value() if quantized == quantized.to_integral_value() else quantized.normalize()


def json_number(amount: Decimal) -> int | float:
    """A JSON number whose text is exactly the decimal (two-place values round-trip through repr)."""
    amount = normalize(amount)
    return int(amount) if amount == amount.to_integral_value() else float(amount)
