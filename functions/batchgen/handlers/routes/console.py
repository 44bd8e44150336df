"""The web console: its static files under `/console/` (public) and `GET /catalog`, the prices
and choices it shows before a batch is created."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from batchgen.config import get_settings, load_catalog
from batchgen.domain import pricing
from batchgen.domain.errors import NotFound
from batchgen.handlers import api_docs as docs
from batchgen.models import api as models

CONSOLE_PATH = "/console"  # public: the page signs in with a token that stays in the browser

router = Router()


def is_console_path(path: str) -> bool:
    return path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")


@router.get(
    "/catalog",
    summary="Prices, models and limits, for pricing a batch before creating it",
    tags=["Credits"],
    responses=docs.responses(200, "The catalog the create route charges by", 401),
)
def catalog() -> models.CatalogResponse:
    """Prices and choices from the same catalog the create route charges by: the console prices live."""
    settings = get_settings()
    source = load_catalog(settings.catalog_path)
    return models.CatalogResponse(
        batchPrices=source.batchPrices,
        standardPrices=source.standardPrices,
        prices={
            name: models.ModelPrices.model_validate(prices) for name, prices in pricing.price_table(source).items()
        },
        models={name: spec.kind for name, spec in source.models.items()},
        aliases=source.aliases,
        defaultModels=source.defaultModels,
        aspectRatios=source.aspectRatios,
        maxBatchRequests=settings.max_batch_requests,
    )


@router.get(CONSOLE_PATH, include_in_schema=False)
def console_root() -> Response[str]:
    """`/console/` is the page; `/console` redirects there (relative, so behind a stage prefix too)."""
    if router.current_event.path.endswith("/"):  # the resolver matches both with and without the slash
        return console_file("index.html")
    return Response(status_code=HTTPStatus.MOVED_PERMANENTLY.value, body="", headers={"Location": "console/"})


@router.get(CONSOLE_PATH + "/<name>", include_in_schema=False)
def console_file(name: str) -> Response[str]:
    from batchgen.console import asset, content_security_policy

    found = asset(name)
    if found is None:
        raise NotFound("No such console page.")
    text, content_type = found
    headers = {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": content_security_policy(),
        "X-Content-Type-Options": "nosniff",
    }
    return Response(status_code=HTTPStatus.OK.value, content_type=content_type, body=text, headers=headers)
