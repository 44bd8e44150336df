"""Anything a client can send gets a 4xx, never a 500."""

import pytest

from tests.conftest import grant, make_token

CASES = [
    ("POST", "/batch/create", '{"type":"food","requests":[null]}', {}),
    ("POST", "/batch/create", '{"type":null,"requests":[{"prompt":"x"}]}', {}),
    ("POST", "/batch/create", '{"type":"food","requests":[{"prompt":"x","id":5}]}', {}),
    ("POST", "/batch/create", "type=food", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("POST", "/batch/create", '{"type":"food","requests":[{"prompt":"\\ud800"}]}', {}),
    ("POST", "/batch/create", '{"type":"food","requests":[{"prompt":"x","imageBase64":"data:image/png;base64,"}]}', {}),
    ("POST", "/batch/create", '{"type":"food","requests":[{"prompt":"x"}],"quality":"4K"}', {}),
    ("POST", "/batch/create", "1e999", {}),
    ("POST", "/batch/create", '{"type":"food","requests":[{"prompt":"' + "x" * 10 + '"}],"displayName":{"a":1}}', {}),
    ("GET", "/batch/history?limit=-1", None, {}),
    ("GET", "/batch/history?cursor=" + "A" * 600, None, {}),
    ("GET", "/api/generate/batch?jobIds=" + ",".join(["gen_x"] * 300), None, {}),
    ("POST", "/admin/credits", '{"userId":"u","amount":1e308,"reason":"x"}', {}),
    ("POST", "/admin/credits", '{"userId":"u","amount":"NaN","reason":"x"}', {}),
    ("DELETE", "/batch/x?purgeImages=maybe", None, {}),
    ("POST", "/batch/%00/cancel", None, {}),
    ("PUT", "/batch/create", "{}", {}),
]


@pytest.mark.parametrize(("method", "path", "body", "headers"), CASES)
def test_hostile_requests_get_a_4xx_never_a_500(api, aws, method, path, body, headers):
    grant("user-1", 10)
    path, _, query = path.partition("?")
    token = make_token("admin", role="admin") if "admin" in path else "default"
    r = api(method, path, raw_body=body, query=query, headers=headers, token=token)
    assert 400 <= r.status < 500, (r.status, r.body)


def test_an_absurd_or_broken_image_is_a_400_naming_the_item_and_charges_nothing(api):
    """Regression: a PNG declaring 50,000 x 50,000 pixels, or magic bytes plus garbage,
    was accepted and charged."""
    from tests.unit.test_image_headers import b64, png_declaring

    grant("user-1", 10)
    requests = [
        {"prompt": "ok", "imageBase64": b64(png_declaring(8, 8))},
        {"prompt": "huge", "imageBase64": b64(png_declaring(50_000, 50_000))},
        {"prompt": "garbage", "imageBase64": b64(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)},
    ]
    answer = api("POST", "/batch/create", {"type": "image-edit", "requests": requests})
    assert answer.status == 400, answer.body
    assert "requests.1" in answer.body["message"] and "50000 x 50000" in answer.body["message"]
    locs = [detail["loc"] for detail in answer.body["details"]]
    assert [loc[-2] for loc in locs] == [1, 2]
    assert api("GET", "/credits").body["balance"] == 10


# Every route that reads a JSON body, with an integer literal where a string or number goes: one over
# Python's 4,300-digit conversion limit (a ValueError, once a 500) and one of a few hundred digits.
HUGE_NUMBER_BODIES = [
    ("POST", "/batch/create", '{"type":"text","requests":[{"prompt":"x"}],"displayName":%s}'),
    ("POST", "/batch/quote", '{"type":"text","requests":[{"prompt":"x"}],"displayName":%s}'),
    ("POST", "/batch/templates", '{"name":%s,"type":"text"}'),
    ("PUT", "/batch/templates/tpl_missing", '{"name":%s,"type":"text"}'),
    ("POST", "/webhooks/endpoints", '{"url":"https://hooks.example/h","description":%s}'),
    ("POST", "/api/generate/batch", '{"prompt":"x","model":"flux-2","images":[{"id":%s,"data":"x"}]}'),
    ("POST", "/admin/credits", '{"userId":"u","amount":%s,"reason":"x"}'),
    ("POST", "/batch/create", '{"type":"text","requests":[{"prompt":"x"}],"displayName":-%s.5e10}'),
]


@pytest.mark.parametrize("digits", [4301, 301])
@pytest.mark.parametrize(("method", "path", "template"), HUGE_NUMBER_BODIES)
def test_a_number_of_hundreds_of_digits_is_a_400_before_it_is_converted(api, aws, method, path, template, digits):
    grant("user-1", 10)
    token = make_token("admin", role="admin") if path.startswith("/admin") else "default"
    answer = api(method, path, raw_body=template % ("9" * digits), token=token)
    assert answer.status == 400, (answer.status, answer.body)
    assert answer.body["error"] == "Invalid request" and "300 digits" in answer.body["message"]
    assert api("GET", "/credits").body["balance"] == 10


def test_numbers_of_ordinary_length_are_read_as_before(api, aws):
    grant("user-1", 10)
    answer = api(
        "POST",
        "/admin/credits",
        {"userId": "u", "amount": 123456789.25, "reason": "x"},
        token=make_token("a", role="admin"),
    )
    assert answer.status == 200 and answer.body["balance"] == 123456789.25


def test_the_standard_endpoint_refuses_a_huge_number_with_a_400(aws, lambda_context):
    import json

    from batchgen.handlers.photo import lambda_handler
    from local.apigw import proxy_event

    body = '{"prompt":%s,"mode":"t2i"}' % ("9" * 4301)
    headers = {"Authorization": f"Bearer {make_token()}", "Content-Type": "application/json"}
    result = lambda_handler(proxy_event("POST", "/api/generate/photo", headers=headers, body=body), lambda_context)
    assert result["statusCode"] == 400 and json.loads(result["body"])["error"]
