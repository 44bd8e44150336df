"""Seed 003's GeneratorV2 contract: image-edit batches through the same pipeline."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from batchgen import constants
from batchgen.domain import reports
from batchgen.domain.batches import BatchDraft, RequestDraft
from batchgen.handlers import api_docs as docs
from batchgen.handlers.routes.support import (
    principal,
    record_created,
    services,
)
from batchgen.models import api as models
from batchgen.usecases.pipeline import create, manage

router = Router()


@router.post(
    "/api/generate/batch",
    summary="Seed 003 GeneratorV2: queue image edits",
    tags=["Seed 003 (GeneratorV2)"],
    responses=docs.responses(200, "Queued", 400, 401, 402, 403, 413, 415),
)
def generate_batch(request: models.GenerateBatchRequest) -> models.GenerateBatchResponse:
    created = create.create_batch(
        services(),
        principal(router),
        BatchDraft(
            batch_type="image-edit",
            requests=[RequestDraft(image.id, None, image.data) for image in request.images],
            shared_prompt=request.prompt,
            model=request.model,
            quality=request.quality,
            aspect_ratio=request.aspectRatio,
            negative_prompt=request.negativePrompt,
            source="generate",
            max_requests=constants.MAX_GENERATE_BATCH_IMAGES,
            field_path=("images", "prompt", "data"),
        ),
    )
    record_created(created.batch.requestCount, created.batch.creditCost)
    return models.GenerateBatchResponse(
        batchId=created.batch.batchId,
        jobs=[models.Job(clientId=item.clientId, generationId=item.itemId) for item in created.items],
        totalCost=created.batch.creditCost,
        status="queued",
        message=f"Queued {len(created.items)} images for processing",
    )


@router.get(
    "/api/generate/batch",
    summary="Seed 003 GeneratorV2: poll generations by id",
    tags=["Seed 003 (GeneratorV2)"],
    responses=docs.responses(200, "One result per id asked for", 400, 401),
)
def generate_batch_status(
    jobIds: Annotated[str, Query(min_length=1, max_length=8192)],  # the seed's query name
    batchId: Annotated[str | None, Query(max_length=128)] = None,
) -> models.GenerateBatchStatusResponse:
    wanted = [job.strip() for job in jobIds.split(",") if job.strip()]
    found = manage.lookup_generations(services(), principal(router), wanted)
    results = [
        reports.generation_result(item, batch) if item and batch else reports.missing_generation(generation)
        for generation, batch, item in found
    ]
    batch_ids = {batch.batchId for _, batch, _ in found if batch}
    return models.GenerateBatchStatusResponse(
        batchId=batchId or (next(iter(batch_ids)) if len(batch_ids) == 1 else None),
        results=[models.GenerationResult.model_validate(result) for result in results],
        summary=models.GenerationSummary.model_validate(reports.generation_summary(results)),
        isComplete=all(result["status"] in ("success", "failed") for result in results),
    )
