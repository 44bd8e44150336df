"""In-memory webhook endpoints and deliveries log, webhook poster and mailer."""

from __future__ import annotations

from dataclasses import dataclass

from batchgen.domain.errors import ConcurrentChange
from batchgen.models.records import DeliveryRecord, WebhookEndpointRecord


class FakeNotifications:
    """The `WebhookEndpoints` and `DeliveryLog` ports."""

    def __init__(self) -> None:
        self.endpoints: dict[str, WebhookEndpointRecord] = {}
        self.deliveries: list[DeliveryRecord] = []
        self.disabled: list[str] = []
        self.secrets: dict[str, str] = {}

    def list_endpoints(self, user_id: str) -> list[WebhookEndpointRecord]:
        return [e for e in self.endpoints.values() if e.userId == user_id]

    def get_endpoint(self, user_id: str, endpoint_id: str) -> WebhookEndpointRecord | None:
        found = self.endpoints.get(endpoint_id)
        return found if found and found.userId == user_id else None

    def put_endpoint(self, endpoint: WebhookEndpointRecord) -> None:
        if endpoint.endpointId in self.endpoints:
            raise ConcurrentChange(endpoint.endpointId)
        self.endpoints[endpoint.endpointId] = endpoint

    def delete_endpoint(self, user_id: str, endpoint_id: str) -> bool:
        if self.get_endpoint(user_id, endpoint_id) is None:
            return False
        self.endpoints.pop(endpoint_id)
        return True

    def rotate_secret(self, user_id: str, endpoint_id: str, secret: str, at: str) -> bool:
        found = self.get_endpoint(user_id, endpoint_id)
        if found is None:
            return False
        update = {"previousSecret": found.secret, "secret": secret, "rotatedAt": at}
        self.endpoints[endpoint_id] = found.model_copy(update=update)
        return True

    def disable_endpoint(self, user_id: str, endpoint_id: str, at: str) -> None:
        self.endpoints[endpoint_id] = self.endpoints[endpoint_id].model_copy(update={"disabledAt": at})
        self.disabled.append(endpoint_id)

    def account_secret(self, user_id: str) -> str:
        return self.secrets.setdefault(user_id, "whsec_" + "QUJD" * 8)

    def record_delivery(self, user_id: str, delivery: DeliveryRecord) -> None:
        self.deliveries.append(delivery)

    def list_deliveries(
        self, user_id: str, *, endpoint_id: str | None, batch_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[DeliveryRecord], str | None]:
        found = [
            d
            for d in reversed(self.deliveries)
            if (endpoint_id is None or d.endpointId == endpoint_id) and (batch_id is None or d.batchId == batch_id)
        ]
        start = int(cursor) if cursor else 0
        page = found[start : start + limit]
        return page, str(start + limit) if len(found) > start + limit else None


@dataclass
class Posted:
    status_code: int | None
    error: str | None = None
    duration_ms: int = 3


class FakePoster:
    def __init__(self, status: int | None = 200) -> None:
        self.status = status
        self.calls: list[tuple[str, dict[str, str], bytes]] = []

    def post(self, url: str, headers: dict[str, str], body: bytes) -> Posted:
        self.calls.append((url, headers, body))
        return Posted(self.status, None if self.status == 200 else "HTTP error")


class FakeMailer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def send_email(self, to: str, subject: str, text: str) -> None:
        self.sent.append((to, subject, text))
