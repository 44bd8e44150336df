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
    assert pricing.resolve_model(catalog, "character", None) == "gemini-3.1-flash-image"
    assert pricing.resolve_model(catalog, "text", None) == "gemini-3.5-flash"
    assert pricing.resolve_model(catalog, "image-edit", "flux-2") == "gemini-3.1-flash-image"
    assert pricing.resolve_model(catalog, "food", "models/gemini-3-pro-image") == "gemini-3-pro-image"
    with pytest.raises(InvalidInput) as error:
        pricing.resolve_model(catalog, "food", "dall-e-3")
    assert "gemini-3.1-flash-image" in error.value.message
    with pytest.raises(InvalidInput):
        pricing.resolve_model(catalog, "text", "gemini-3.1-flash-image")  # an image model for a text batch


# Shut down per https://ai.google.dev/gemini-api/docs/deprecations (2026): defaults and aliases must
# never point at them, and a client that still sends one gets the successor, not a 404 from Gemini.
RETIRED = {
    "gemini-2.5-flash-image": "gemini-3.1-flash-image",
    "gemini-3-pro-image-preview": "gemini-3-pro-image",
    "gemini-3.1-flash-image-preview": "gemini-3.1-flash-image",
    "gemini-2.5-flash": "gemini-3.5-flash",
    "gemini-2.5-pro": "gemini-3.5-flash",
}


def test_defaults_and_aliases_never_name_a_retired_model(catalog):
    targets = set(catalog.defaultModels.values()) | set(catalog.aliases.values()) | set(catalog.models)
    assert not targets & set(RETIRED)
    assert set(catalog.retiredModels) >= set(RETIRED)


@pytest.mark.parametrize(("retired", "successor"), sorted(RETIRED.items()))
def test_retired_model_names_stay_accepted_as_aliases_of_their_successors(catalog, retired, successor):
    batch_type = "text" if successor == "gemini-3.5-flash" else "product"
    assert pricing.resolve_model(catalog, batch_type, retired) == successor
    assert pricing.resolve_model(catalog, batch_type, f"models/{retired}") == successor


def test_a_quality_the_model_cannot_deliver_is_refused_naming_the_allowed_ones(catalog):
    # Before: quality "4k" on a model without image sizes was billed at 2x for a 1K image.
    with pytest.raises(InvalidInput) as error:
        pricing.check_quality(catalog, "gemini-3.5-flash", "4k")
    assert "Allowed qualities: 1k" in error.value.message
    assert error.value.details[0]["loc"] == ["body", "quality"]
    limited = catalog.model_copy(update={"models": {"old-image": {"kind": "image", "qualities": ["1k"]}}})
    with pytest.raises(InvalidInput):
        pricing.check_quality(limited, "old-image", "2k")
    pricing.check_quality(catalog, "gemini-3-pro-image", "4k")  # supported: accepted
    pricing.check_quality(catalog, "gemini-3.5-flash", None)  # no quality asked: always fine


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
