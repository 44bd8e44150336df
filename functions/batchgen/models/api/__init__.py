"""HTTP request and response bodies: the public contract, one module per feature (`common` for what they
share). Every body is importable from here too (`batchgen.models.api.<Name>`)."""

from batchgen.models.api.bulk import (
    ResultsManifest as ResultsManifest,
)
from batchgen.models.api.bulk import (
    RetryBatchResponse as RetryBatchResponse,
)
from batchgen.models.api.bulk import (
    UploadResponse as UploadResponse,
)
from batchgen.models.api.common import (
    EXAMPLE_IMAGE as EXAMPLE_IMAGE,
)
from batchgen.models.api.common import (
    BatchStatusName as BatchStatusName,
)
from batchgen.models.api.common import (
    BatchTypeName as BatchTypeName,
)
from batchgen.models.api.common import (
    CatalogResponse as CatalogResponse,
)
from batchgen.models.api.common import (
    Choice as Choice,
)
from batchgen.models.api.common import (
    Credits as Credits,
)
from batchgen.models.api.common import (
    ErrorBody as ErrorBody,
)
from batchgen.models.api.common import (
    HealthResponse as HealthResponse,
)
from batchgen.models.api.common import (
    HistoryTypeName as HistoryTypeName,
)
from batchgen.models.api.common import (
    InsufficientCreditsBody as InsufficientCreditsBody,
)
from batchgen.models.api.common import (
    ItemStatusName as ItemStatusName,
)
from batchgen.models.api.common import (
    ModelPrices as ModelPrices,
)
from batchgen.models.api.common import (
    Prompt as Prompt,
)
from batchgen.models.api.common import (
    Quality as Quality,
)
from batchgen.models.api.common import (
    QualityPrice as QualityPrice,
)
from batchgen.models.api.common import (
    ShortText as ShortText,
)
from batchgen.models.api.common import (
    StrictBody as StrictBody,
)
from batchgen.models.api.notify import (
    CreatedWebhookEndpoint as CreatedWebhookEndpoint,
)
from batchgen.models.api.notify import (
    CreateWebhookEndpointRequest as CreateWebhookEndpointRequest,
)
from batchgen.models.api.notify import (
    WebhookDeliveryList as WebhookDeliveryList,
)
from batchgen.models.api.notify import (
    WebhookDeliveryView as WebhookDeliveryView,
)
from batchgen.models.api.notify import (
    WebhookEndpointList as WebhookEndpointList,
)
from batchgen.models.api.notify import (
    WebhookEndpointView as WebhookEndpointView,
)
from batchgen.models.api.notify import (
    WebhookEventName as WebhookEventName,
)
from batchgen.models.api.notify import (
    WebhookSecretResponse as WebhookSecretResponse,
)
from batchgen.models.api.notify import (
    WebhookTestResponse as WebhookTestResponse,
)
from batchgen.models.api.pipeline import (
    AdminCreditsRequest as AdminCreditsRequest,
)
from batchgen.models.api.pipeline import (
    AdminCreditsResponse as AdminCreditsResponse,
)
from batchgen.models.api.pipeline import (
    AdminHistoryEntry as AdminHistoryEntry,
)
from batchgen.models.api.pipeline import (
    AdminUserCreditsResponse as AdminUserCreditsResponse,
)
from batchgen.models.api.pipeline import (
    BatchRequestItem as BatchRequestItem,
)
from batchgen.models.api.pipeline import (
    BatchStatusResponse as BatchStatusResponse,
)
from batchgen.models.api.pipeline import (
    CreateBatchRequest as CreateBatchRequest,
)
from batchgen.models.api.pipeline import (
    CreateBatchResponse as CreateBatchResponse,
)
from batchgen.models.api.pipeline import (
    CreditsResponse as CreditsResponse,
)
from batchgen.models.api.pipeline import (
    DeleteBatchResponse as DeleteBatchResponse,
)
from batchgen.models.api.pipeline import (
    GeminiBilling as GeminiBilling,
)
from batchgen.models.api.pipeline import (
    GeminiJobCounts as GeminiJobCounts,
)
from batchgen.models.api.pipeline import (
    GenerateBatchRequest as GenerateBatchRequest,
)
from batchgen.models.api.pipeline import (
    GenerateBatchResponse as GenerateBatchResponse,
)
from batchgen.models.api.pipeline import (
    GenerateBatchStatusResponse as GenerateBatchStatusResponse,
)
from batchgen.models.api.pipeline import (
    GenerateImage as GenerateImage,
)
from batchgen.models.api.pipeline import (
    GenerationResult as GenerationResult,
)
from batchgen.models.api.pipeline import (
    GenerationSummary as GenerationSummary,
)
from batchgen.models.api.pipeline import (
    HistoryEntry as HistoryEntry,
)
from batchgen.models.api.pipeline import (
    ItemView as ItemView,
)
from batchgen.models.api.pipeline import (
    Job as Job,
)
from batchgen.models.api.pipeline import (
    LedgerEntryView as LedgerEntryView,
)
from batchgen.models.api.pipeline import (
    Summary as Summary,
)
from batchgen.models.api.pipeline import (
    UsageDay as UsageDay,
)
from batchgen.models.api.planning import (
    QuoteResponse as QuoteResponse,
)
from batchgen.models.api.planning import (
    TemplateRequest as TemplateRequest,
)
from batchgen.models.api.planning import (
    TemplateView as TemplateView,
)
from batchgen.models.api.routing import (
    GeminiWebhookAck as GeminiWebhookAck,
)
from batchgen.models.api.routing import (
    PhotoRequest as PhotoRequest,
)
from batchgen.models.api.routing import (
    PhotoResponse as PhotoResponse,
)
