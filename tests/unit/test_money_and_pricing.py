from decimal import Decimal

import pytest

from batchgen.config import load_catalog
from batchgen.domain import pricing
from batchgen.domain.errors import InvalidInput
from batchgen.domain.money import json_number, normalize, to_credits


@pytest.fixture
def catalog():
    return load_catalog("")


@pytest.mark.parametrize(
    ("batch_type", "quality", "unit"),
    [
        ("character", None, "2"),
        ("food", "1k", "2"),
        ("product", "2k", "2.5"),
        ("product", "4k", "5"),
        ("text-to-image", "4k", "4"),
        ("image-edit", "1k", "2"),
        ("text", None, "0.5"),
    ],
)
def test_batch_price_is_half_the_standard_price_times_quality(catalog, batch_type, quality, unit):
    assert pricing.unit_price(catalog, batch_type, quality) == Decimal(unit)
    multiplier = catalog.qualityMultipliers[quality or "1k"]
    assert pricing.unit_price(catalog, batch_type, quality) * 2 == catalog.standardPrices[batch_type] * multiplier


def test_quote_total_is_exact_for_fractional_prices(catalog):
    quote = pricing.quote(catalog, "text", None, 3)
    assert quote.total == Decimal("1.5")
    assert pricing.quote(catalog, "product", None, 7).total == Decimal("17.5")


def test_unknown_type_and_quality_are_invalid(catalog):
    with pytest.raises(InvalidInput):
        pricing.unit_price(catalog, "video", None)
    with pytest.raises(InvalidInput):
        pricing.unit_price(catalog, "food", "8k")


def test_model_resolution_defaults_aliases_and_rejects_unknown(catalog):
    assert pricing.resolve_model(catalog, "character", None) == "gemini-2.5-flash-image"
    assert pricing.resolve_model(catalog, "text", None) == "gemini-2.5-flash"
    assert pricing.resolve_model(catalog, "image-edit", "flux-2") == "gemini-2.5-flash-image"
    assert pricing.resolve_model(catalog, "food", "models/gemini-3-pro-image-preview") == "gemini-3-pro-image-preview"
    with pytest.raises(InvalidInput) as error:
        pricing.resolve_model(catalog, "food", "dall-e-3")
    assert "gemini-2.5-flash-image" in error.value.message
    with pytest.raises(InvalidInput):
        pricing.resolve_model(catalog, "text", "gemini-2.5-flash-image")  # an image model for a text batch


def test_money_parsing_is_exact_and_refuses_more_than_two_decimals():
    assert to_credits(2.5) == Decimal("2.5")
    assert to_credits("0.10") == Decimal("0.1")
    assert to_credits(0.1) + to_credits(0.2) == Decimal("0.3")
    for bad in ("1.005", "nan", "inf", "abc"):
        with pytest.raises(ValueError):
            to_credits(bad)


def test_json_numbers_render_the_exact_decimal():
    assert json_number(Decimal("4.00")) == 4 and isinstance(json_number(Decimal("4.00")), int)
    assert repr(json_number(Decimal("2.50"))) == "2.5"
    assert repr(json_number(Decimal("12345678.99"))) == "12345678.99"
    assert normalize(Decimal("-0.50")) == Decimal("-0.5")


def test_absurd_amounts_are_refused_not_crashed_on():
    for bad in ("1e308", "-1e12", 10**40):
        with pytest.raises(ValueError):
            to_credits(bad)
