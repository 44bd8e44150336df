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
