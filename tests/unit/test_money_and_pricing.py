from decimal import Decimal

import pytest

from batchgen.config import ModelSpec, load_catalog
from batchgen.domain import pricing
from batchgen.domain.errors import InvalidInput
from batchgen.domain.money import json_number, normalize, to_credits

LIST_PRICE = {"inputPerMillion": "1", "outputTextPerMillion": "1"}


@pytest.fixture
def catalog():
    return load_catalog("")


@pytest.mark.parametrize(
    ("batch_type", "quality", "unit"),
    [
        # The seeds' price table at the batch rate: the default model at 1k keeps these.
        ("character", None, "2"),
        ("food", "1k", "2"),
        ("product", "1k", "2.5"),
        ("text-to-image", None, "2"),
        ("image-edit", "1k", "2"),
        ("text", None, "0.5"),
        # gemini-3.1-flash-image bills 2K at 1.5x and 4K at 2.25x its 1K price.
        ("product", "2k", "3.75"),
        ("product", "4k", "5.63"),  # 5.625, rounded half up to the cent
        ("text-to-image", "2k", "3"),
        ("text-to-image", "4k", "4.5"),
    ],
)
def test_batch_price_is_the_types_price_times_the_default_models_factor(catalog, batch_type, quality, unit):
    assert pricing.unit_price(catalog, batch_type, quality) == Decimal(unit)
    model = catalog.defaultModels[batch_type]
    factor = catalog.models[model].qualities[quality or "1k"]
    assert pricing.standard_unit_price(catalog, batch_type, quality) == pricing.credits(
        catalog.standardPrices[batch_type] * factor
    )


@pytest.mark.parametrize(
    ("model", "quality", "unit"),
    [
        ("gemini-3.1-flash-image", "1k", "2"),
        ("gemini-3.1-flash-image", "2k", "3"),
        ("gemini-3.1-flash-image", "4k", "4.5"),
        ("gemini-3-pro-image", "1k", "4"),  # Gemini bills pro twice flash: so does the service
        ("gemini-3-pro-image", "2k", "4"),
        ("gemini-3-pro-image", "4k", "7.2"),
        ("nano-banana-pro", "1k", "4"),
        ("flux-2-pro", "4k", "7.2"),
        ("flux-2", "2k", "3"),
    ],
)
def test_prices_follow_geminis_ratios_per_model_and_quality(catalog, model, quality, unit):
    resolved = pricing.resolve_model(catalog, "text-to-image", model)
    assert pricing.unit_price(catalog, "text-to-image", quality, resolved) == Decimal(unit)
    assert pricing.standard_unit_price(catalog, "text-to-image", quality, resolved) == Decimal(unit) * 2


def test_the_factors_are_geminis_list_price_ratios(catalog):
    flash = catalog.models["gemini-3.1-flash-image"]
    for model, spec in catalog.models.items():
        if spec.kind != "image":
            continue
        for quality, factor in spec.qualities.items():
            size = catalog.imageSizeByQuality[quality]
            ratio = spec.listPrice.imageBySize[size] / flash.listPrice.imageBySize["1K"]
            assert abs(factor - ratio) / ratio < Decimal("0.01"), (model, quality, factor, ratio)


def test_every_model_and_alias_has_seed_003s_compute_price(catalog):
    table = pricing.price_table(catalog)
    names = {*catalog.models, *catalog.aliases, *catalog.retiredModels, *catalog.deprecatedModels}
    assert set(table) == names
    assert table["flux-2"]["qualities"]["1k"]["stars"] == Decimal(2)  # computePrice("flux-2", {quality})
    assert table["flux-2-pro"]["qualities"]["4k"]["stars"] == Decimal("7.2")
    assert table["gemini-3.5-flash"]["model"] == "gemini-3.6-flash"
    assert table["gemini-3.6-flash"]["qualities"] == {
        "1k": {"stars": Decimal("0.5"), "batch": {"text": Decimal("0.5")}, "standard": {"text": Decimal(1)}}
    }


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
    assert pricing.resolve_model(catalog, "text", None) == "gemini-3.6-flash"
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
    "gemini-2.5-flash": "gemini-3.6-flash",
    "gemini-2.5-pro": "gemini-3.6-flash",
}


def test_defaults_and_aliases_never_name_a_retired_model(catalog):
    targets = set(catalog.defaultModels.values()) | set(catalog.aliases.values()) | set(catalog.models)
    assert not targets & set(RETIRED)
    assert set(catalog.retiredModels) >= set(RETIRED)


@pytest.mark.parametrize(("retired", "successor"), sorted(RETIRED.items()))
def test_retired_model_names_stay_accepted_as_aliases_of_their_successors(catalog, retired, successor):
    batch_type = "text" if successor == "gemini-3.6-flash" else "product"
    assert pricing.resolve_model(catalog, batch_type, retired) == successor
    assert pricing.resolve_model(catalog, batch_type, f"models/{retired}") == successor


def test_a_quality_the_model_cannot_deliver_is_refused_naming_the_allowed_ones(catalog):
    # Before: quality "4k" on a model without image sizes was billed at 2x for a 1K image.
    with pytest.raises(InvalidInput) as error:
        pricing.check_quality(catalog, "gemini-3.6-flash", "4k")
    assert "Allowed qualities: 1k" in error.value.message
    assert error.value.details[0]["loc"] == ["body", "quality"]
    old = ModelSpec.model_validate({"kind": "image", "qualities": {"1k": "1"}, "listPrice": LIST_PRICE})
    limited = catalog.model_copy(update={"models": {"old-image": old}})
    with pytest.raises(InvalidInput):
        pricing.check_quality(limited, "old-image", "2k")
    pricing.check_quality(catalog, "gemini-3-pro-image", "4k")  # supported: accepted
    pricing.check_quality(catalog, "gemini-3.6-flash", None)  # no quality asked: always fine


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
