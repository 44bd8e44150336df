"""/openapi.json describes the service as it behaves: its error body, its auth, examples it accepts."""

from __future__ import annotations

import pytest

from tests.conftest import grant, make_token

ADMIN = make_token("admin-1", role="admin")
PUBLIC = {"/health"}


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
