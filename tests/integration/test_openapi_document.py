"""/openapi.json describes the service as it behaves: its error body, its auth, examples it accepts."""

from __future__ import annotations

import re

import pytest

from batchgen import constants
from tests.conftest import grant, make_token
from tests.helpers import batch_body, png_data_url

ADMIN = make_token("admin-1", role="admin")
PUBLIC = {"/health", "/webhooks/gemini"}


@pytest.fixture
def document(api, aws):
    response = api("GET", "/openapi.json", token=None)
    assert response.status == 200
    return response.body


def operations(document):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def schema_ref(answer):
    return answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]


def test_no_route_documents_the_422_the_service_never_sends(document):
    assert [(p, m) for p, m, op in operations(document) if "422" in op["responses"]] == []
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_every_error_answer_is_the_error_body(document):
    for path, method, operation in operations(document):
        errors = {code: answer for code, answer in operation["responses"].items() if int(code) >= 400}
        assert "500" in errors and "429" in errors, (path, method)
        for code, answer in errors.items():
            expected = "InsufficientCreditsBody" if code == "402" else "ErrorBody"
            assert schema_ref(answer) == expected, (path, method, code)
    error_body = document["components"]["schemas"]["ErrorBody"]
    assert set(error_body["required"]) == {"error", "message"}
    assert {"required", "available"} <= set(document["components"]["schemas"]["InsufficientCreditsBody"]["required"])


def test_protected_routes_declare_the_bearer_scheme_and_public_ones_none(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearerAuth"]["description"],
    }
    assert {"bearerAuth": []} in document["security"]
    for path, method, operation in operations(document):
        if path in PUBLIC:
            assert operation["security"] == [], (path, method)
        else:
            assert "security" not in operation, (path, method)  # inherits the document's Bearer requirement
            assert "401" in operation["responses"], (path, method)


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/batch/create", "post", {"202", "400", "401", "402", "403", "404", "409", "413", "414", "415", "431"}),
        ("/batch/status/{batch_id}", "get", {"200", "401", "404"}),
        ("/batch/{batch_id}/cancel", "post", {"200", "401", "404", "409"}),
        ("/batch/{batch_id}", "delete", {"202", "204", "401", "404", "409"}),
        ("/api/generate/batch", "post", {"200", "400", "401", "402", "403", "413"}),
        ("/admin/credits", "post", {"200", "400", "401", "402", "403"}),
    ],
)
def test_routes_declare_the_statuses_they_answer(document, path, method, codes):
    assert codes <= set(document["paths"][path][method]["responses"])


def test_every_route_has_a_summary_and_a_tag(document):
    for path, method, operation in operations(document):
        assert operation.get("tags") and operation.get("summary"), (path, method)
        assert not operation["summary"].startswith(method.upper() + " "), (path, method)  # not the generated one


def test_the_documented_examples_are_accepted_by_the_service(api, aws, document):
    # Given a user with credits, as "Try it out" would be after Authorize
    grant("user-1", 100)
    schemas = document["components"]["schemas"]
    # When each documented request example is sent to its route
    for example in schemas["CreateBatchRequest"]["examples"]:
        assert api("POST", "/batch/create", example).status == 202, example
    for example in schemas["GenerateBatchRequest"]["examples"]:
        assert api("POST", "/api/generate/batch", example).status == 200, example
    for example in schemas["AdminCreditsRequest"]["examples"]:
        assert api("POST", "/admin/credits", example, token=ADMIN).status == 200, example
    # Then a request item's own image example is a usable image too
    image = schemas["BatchRequestItem"]["properties"]["imageBase64"]["anyOf"][0]
    item_example = schemas["BatchRequestItem"]["properties"]["imageBase64"]["examples"][0]
    assert image["type"] == "string"
    response = api(
        "POST", "/batch/create", {"type": "image-edit", "requests": [{"prompt": "x", "imageBase64": item_example}]}
    )
    assert response.status == 202


@pytest.mark.parametrize(
    ("client_path", "servers"),
    [
        ("/openapi.json", [{"url": "/"}]),
        ("/v1/openapi.json", [{"url": "/v1"}]),
        ("/api/v1/openapi.json", [{"url": "/api/v1"}]),
    ],
)
def test_try_it_out_calls_the_prefix_the_document_was_read_from(aws, lambda_context, client_path, servers):
    import json

    from batchgen.handlers.api import lambda_handler
    from local.apigw import proxy_event

    # Given API Gateway serving the API under a stage (or a custom domain's base path)
    event = proxy_event("GET", "/openapi.json")
    event["requestContext"]["path"] = client_path
    # Then the document's server is that prefix, so /docs "Try it out" reaches the API
    assert json.loads(lambda_handler(event, lambda_context)["body"])["servers"] == servers


def test_a_204_documents_no_body(api, document):
    """Regression (schemathesis ST104/ST109): DELETE's 204 was documented with a JSON body."""
    for path, method, operation in operations(document):
        if "204" in operation["responses"]:
            assert "content" not in operation["responses"]["204"], (path, method)


def test_routes_with_a_path_parameter_document_404(api, document):
    """Regression (schemathesis ST103): a user id the route pattern cannot match answers 404."""
    for path, method, operation in operations(document):
        if "{" in path:
            assert schema_ref(operation["responses"]["404"]) == "ErrorBody", (path, method)
    answer = api("GET", "/admin/users/\u0097\U000f42db/credits", token=ADMIN)
    assert answer.status == 404 and set(answer.body) == {"error", "message"}


# --- the document says what the server does ---------------------------------------------------------
def query(document, path: str, name: str, method: str = "get") -> dict:
    found = next(p for p in document["paths"][path][method]["parameters"] if p["name"] == name)
    schema = found["schema"]
    return next((option for option in schema.get("anyOf", []) if option.get("type") != "null"), schema)


def test_the_standard_endpoint_and_the_gemini_webhook_are_in_the_document(document):
    photo = document["paths"]["/api/generate/photo"]["post"]
    assert set(photo["responses"]) >= {"200", "400", "401", "402", "403", "502"}
    body = photo["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert body == "PhotoRequest" and "PhotoResponse" in document["components"]["schemas"]
    gemini = document["paths"]["/webhooks/gemini"]["post"]
    assert set(gemini["responses"]) >= {"202", "400", "401", "404"} and gemini["security"] == []


def test_type_is_required_on_create_and_quote_unless_a_template_gives_it(document, api):
    create = document["components"]["schemas"]["CreateBatchRequest"]
    assert {"anyOf": [{"required": ["type"]}, {"required": ["templateId"]}]} in create["allOf"]
    for path in ("/batch/create", "/batch/quote"):
        ref = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/CreateBatchRequest")
        answer = api("POST", path, {"requests": [{"prompt": "x"}]})
        assert answer.status == 400 and "type" in answer.body["message"], answer.body


def test_status_type_and_cursor_queries_take_exactly_what_the_server_takes(document):
    from batchgen.domain.states import BatchStatus, ItemStatus

    for path in ("/batch/history", "/admin/batches"):
        assert set(query(document, path, "status")["enum"]) == {s.value for s in BatchStatus}
        assert "batch-character" in query(document, path, "type")["enum"]
        assert query(document, path, "cursor")["pattern"].startswith("^")
    assert set(query(document, "/batch/{batch_id}/items", "status")["enum"]) == {s.value for s in ItemStatus}
    assert query(document, "/batch/{batch_id}/items", "cursor")["pattern"] == r"^\d{1,6}$"
    assert "dlv_" in query(document, "/webhooks/deliveries", "cursor")["pattern"]


def test_the_cursors_the_server_issues_match_its_patterns_and_any_match_is_a_position(document, api):
    grant("user-1", 10)
    for n in range(3):
        assert api("POST", "/batch/create", {"type": "text", "requests": [{"prompt": f"p{n}"}]}).status == 202
    page = api("GET", "/batch/history", query="limit=1")
    cursor = page.headers["X-Next-Cursor"]
    assert re.match(query(document, "/batch/history", "cursor")["pattern"], cursor), cursor
    assert len(api("GET", "/batch/history", query=f"limit=5&cursor={cursor}").body) == 2
    made_up = "2000-01-01T00:00:00.000Z~batch_0000000000000_0000000000"  # before every batch: nothing after it
    assert re.match(query(document, "/batch/history", "cursor")["pattern"], made_up)
    assert api("GET", "/batch/history", query=f"cursor={made_up}").status == 200
    assert api("GET", "/batch/history", query="cursor=not-a-cursor").status == 400


def test_an_empty_model_or_aspect_ratio_is_refused_as_the_schema_says(document, api):
    grant("user-1", 10)
    for schema_name in ("CreateBatchRequest", "TemplateRequest", "GenerateBatchRequest", "PhotoRequest"):
        properties = document["components"]["schemas"][schema_name]["properties"]
        for field in ("model", "aspectRatio"):
            field_schema = properties[field]
            options = field_schema.get("anyOf", [field_schema])
            assert any(option.get("minLength") == 1 for option in options), (schema_name, field)
    for field in ("model", "aspectRatio"):
        answer = api("POST", "/batch/quote", {"type": "text", "requests": [{"prompt": "x"}], field: ""})
        assert answer.status == 400, (field, answer.body)


def test_the_documents_own_webhook_url_example_is_accepted(document, api):
    request = document["components"]["schemas"]["CreateWebhookEndpointRequest"]["properties"]["url"]
    [example] = request["examples"]
    answer = api("POST", "/webhooks/endpoints", {"url": example})
    assert answer.status == 201, answer.body


# --- error examples: what /docs shows for each answer is what the route really answers -------------
def filled(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "zz_missing_1", path)


def example_of(document, path: str, method: str, code: int) -> dict:
    answer = document["paths"][path][method]["responses"][str(code)]
    return answer["content"]["application/json"]["example"]


def assert_like_the_example(document, path: str, method: str, code: int, real) -> None:
    """The real answer has the documented status, the example's title and the example's fields."""
    assert real.status == code, (path, method, code, real.body)
    example = example_of(document, path, method, code)
    assert real.body["error"] == example["error"], (path, method, code, real.body)
    optional = {"details"}
    assert set(example) - optional <= set(real.body) <= set(example) | optional, (path, method, code, real.body)


def test_every_error_answer_documents_an_example_with_its_own_title(document):
    seen: dict[str, set[str]] = {}
    for path, method, operation in operations(document):
        for code, answer in operation["responses"].items():
            if int(code) >= 400:
                example = answer["content"]["application/json"]["example"]
                assert {"error", "message"} <= set(example), (path, method, code)
                seen.setdefault(code, set()).add(example["error"])
    assert all(len(titles) == 1 for titles in seen.values()), seen  # one title per status, not one for all
    assert len({next(iter(titles)) for titles in seen.values()}) == len(seen)
    assert example_of(document, "/batch/create", "post", 402)["error"] == "Insufficient credits"


def test_error_examples_match_the_real_answers_of_every_route(api, aws, document):
    user, admin = make_token("user-ex"), ADMIN
    for path, method, operation in operations(document):
        answers = operation["responses"]
        if operation.get("security") == [] or path in ("/webhooks/gemini", constants.PHOTO_PATH):
            continue  # no user token; or another function's (tests/integration/test_standard_endpoint.py)
        route = filled(path)
        token = admin if path.startswith("/admin/") else user
        body = {} if "requestBody" in operation else None
        assert_like_the_example(document, path, method, 401, api(method.upper(), route, body, token=""))
        if "{" in path and "404" in answers:
            real = api(
                method.upper(), route, {"type": "text", "requests": [{"prompt": "x"}]} if body else None, token=token
            )
            # A body route may refuse its body before it looks the id up; any user id has credits (200)
            if real.status not in (200, 400):
                assert_like_the_example(document, path, method, 404, real)
        if body is not None and "400" in answers:
            assert_like_the_example(document, path, method, 400, api(method.upper(), route, {"zz": 1}, token=token))
        if path.startswith("/admin/") and "403" in answers:
            assert_like_the_example(document, path, method, 403, api(method.upper(), route, body, token=user))


def test_error_examples_match_the_real_402_403_409_413_415(api, aws, document):
    grant("user-1", 1)
    create = ("/batch/create", "post")
    assert_like_the_example(document, *create, 402, api("POST", "/batch/create", batch_body(3)))
    images = {"prompt": "p", "model": "flux-2", "images": [{"id": f"i{n}", "data": png_data_url()} for n in range(3)]}
    assert_like_the_example(document, "/api/generate/batch", "post", 402, api("POST", "/api/generate/batch", images))
    assert_like_the_example(document, *create, 403, api("POST", "/batch/create", batch_body(1), token=ADMIN))
    assert_like_the_example(
        document, *create, 413, api("POST", "/batch/create", raw_body="x" * (constants.MAX_BODY_BYTES + 1))
    )
    assert_like_the_example(
        document, *create, 415, api("POST", "/batch/create", raw_body="x", headers={"Content-Type": "text/plain"})
    )
    grant("user-1", 10)
    batch_id = api("POST", "/batch/create", batch_body(1)).body["id"]
    api("POST", f"/batch/{batch_id}/cancel")
    cancel = ("/batch/{batch_id}/cancel", "post")
    assert_like_the_example(document, *cancel, 409, api("POST", f"/batch/{batch_id}/cancel"))
