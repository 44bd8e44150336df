"""`GET /catalog` (prices for the console) and the console's static files under `/console/`."""

from __future__ import annotations

import pytest


def assert_error_body(response, status):
    assert response.status == status, response.body
    assert response.body["error"] and response.body["message"]


def test_catalog_prices_come_from_the_catalog_the_create_route_charges_by(api, aws):
    response = api("GET", "/catalog")
    assert response.status == 200
    assert response.body["batchPrices"] == {
        "character": 2,
        "food": 2,
        "product": 2.5,
        "text-to-image": 2,
        "image-edit": 2,
        "text": 0.5,
    }
    prices = response.body["prices"]
    # seed 003's computePrice(model, {quality}).stars, for every model and alias:
    assert prices["flux-2"]["qualities"]["1k"]["stars"] == 2 and prices["flux-2"]["model"] == "gemini-3.1-flash-image"
    assert prices["flux-2-pro"]["qualities"]["4k"] == {
        "stars": 7.2,
        "batch": {"character": 7.2, "food": 7.2, "product": 9, "text-to-image": 7.2, "image-edit": 7.2},
        "standard": {"character": 14.4, "food": 14.4, "product": 18, "text-to-image": 14.4, "image-edit": 14.4},
    }
    assert set(prices) >= set(response.body["aliases"]) | set(response.body["models"])
    assert response.body["maxBatchRequests"] == 20
    assert "16:9" in response.body["aspectRatios"]
    text_model = response.body["defaultModels"]["text"]
    assert response.body["models"][text_model] == "text"


def test_catalog_needs_a_token_and_is_in_the_openapi_document(api, aws):
    assert_error_body(api("GET", "/catalog", token=""), 401)
    assert "/catalog" in api("GET", "/openapi.json", token="").body["paths"]


@pytest.mark.parametrize(
    ("path", "content_type", "snippet"),
    [
        ("/console/", "text/html", '<script type="module" src="app.js">'),
        ("/console/index.html", "text/html", "<main"),
        ("/console/app.js", "text/javascript", "import {"),
        ("/console/api.js", "text/javascript", "sessionStorage"),
        ("/console/style.css", "text/css", ":focus-visible"),
    ],
)
def test_console_files_are_public_with_a_strict_content_security_policy(api, aws, path, content_type, snippet):
    response = api("GET", path, token="")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith(content_type)
    assert snippet in response.body
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_console_without_slash_redirects_relatively(api, aws):
    response = api("GET", "/console", token="")
    assert response.status == 301 and response.headers["Location"] == "console/"


@pytest.mark.parametrize("name", ["nope.js", "__init__.py", "..%2Fcatalog.json", ".hidden.js"])
def test_only_console_files_are_served(api, aws, name):
    assert_error_body(api("GET", f"/console/{name}", token=""), 404)


def test_console_prefix_opens_nothing_else(api, aws):
    assert_error_body(api("GET", "/consolecredits", token=""), 404)
    assert_error_body(api("POST", "/console/app.js", {"x": 1}, token=""), 405)
    assert_error_body(api("GET", "/credits", token=""), 401)
