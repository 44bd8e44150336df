"""Answers decided before routing: unknown routes, wrong methods, non-JSON bodies."""

from __future__ import annotations

import pytest

from tests.conftest import grant
from tests.helpers import batch_body


def assert_error(response, status: int, title: str) -> None:
    assert response.status == status, response.body
    assert response.body["error"] == title
    assert isinstance(response.body["message"], str) and response.body["message"]


@pytest.mark.parametrize("token", [None, "default"], ids=["no token", "user token"])
def test_unknown_route_is_404_with_or_without_a_token(api, aws, token):
    # Given a seed client that calls a login route the service does not have
    response = api("POST", "/auth/login", {"user": "x"}, token=token)
    # Then it learns the route does not exist, whether or not it sent a token
    assert_error(response, 404, "Not found")
    assert "/auth/login" in response.body["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/batch/create", "POST"),
        ("GET", "/batch/create", "POST"),
        ("DELETE", "/credits", "GET"),
        ("PATCH", "/batch/b_123/cancel", "POST"),
        ("POST", "/batch/status/b_123", "GET"),
    ],
)
@pytest.mark.parametrize("token", [None, "default"], ids=["no token", "user token"])
def test_wrong_method_is_405_naming_the_allowed_ones(api, aws, method, path, allowed, token):
    response = api(method, path, token=token)
    assert_error(response, 405, "Method not allowed")
    assert response.headers["Allow"] == allowed
    assert allowed in response.body["message"]


def test_a_path_with_two_methods_lists_both(api, aws):
    response = api("PUT", "/api/generate/batch")
    assert response.status == 405
    assert response.headers["Allow"] == "GET, POST"


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/xml",
        "application/vnd.api+json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ],
)
def test_a_non_json_body_is_415_and_changes_nothing(api, aws, content_type):
    grant("user-1", 10)
    response = api("POST", "/batch/create", batch_body(1), headers={"Content-Type": content_type})
    assert_error(response, 415, "Unsupported media type")
    assert "application/json" in response.body["message"]
    assert aws.queue_messages("batchgen-submit") == []
    assert api("GET", "/credits").body["balance"] == 10


def test_a_json_body_without_content_type_is_read_as_json(api, aws):
    grant("user-1", 10)
    response = api("POST", "/batch/create", batch_body(1), headers={"Content-Type": ""})
    assert response.status == 202


def test_json_with_a_charset_parameter_is_accepted(api, aws):
    grant("user-1", 10)
    response = api("POST", "/batch/create", batch_body(1), headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status == 202


def test_a_body_that_is_not_utf8_is_400(api, aws, lambda_context):
    from batchgen.handlers.api import lambda_handler
    from local.apigw import proxy_event
    from tests.conftest import make_token

    event = proxy_event(
        "POST",
        "/batch/create",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {make_token()}"},
        body=b'{"type": "food", "requests": [{"prompt": "\xff\xfe"}]}',
    )
    assert event["isBase64Encoded"]
    result = lambda_handler(event, lambda_context)
    assert result["statusCode"] == 400
    assert "UTF-8" in result["body"]


def test_json_nested_too_deeply_is_400(api, aws):
    response = api("POST", "/batch/create", raw_body="[" * 5000 + "]" * 5000)
    assert_error(response, 400, "Invalid JSON")
