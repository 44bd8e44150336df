"""Anything a client can send gets a 4xx, never a 500 (SPEC §2)."""

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
