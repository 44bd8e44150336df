from tests.conftest import grant
from tests.helpers import batch_body


def test_create_then_status(api, aws):
    grant("user-1", 10)
    created = api("POST", "/batch/create", batch_body(2))
    assert created.status == 202, created.body
    assert created.body["creditCost"] == 4
    status = api("GET", f"/batch/status/{created.body['id']}")
    assert status.status == 200, status.body
    assert status.body["summary"]["pending"] == 2
