"""Notification rules and decisions with in-memory fakes: subscriptions, signatures, retries, SSRF, the relay."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from batchgen import constants
from batchgen.domain import ids
from batchgen.domain import notifications as rules
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.models.messages import DeliverWebhook, SendEmail, WriteResultsManifest
from batchgen.models.records import (
    BatchRecord,
    ItemRecord,
    OutboxRecord,
    WebhookEndpointRecord,
)
from batchgen.usecases.notify import notify
from tests.fakes import FakeNotifications, FakePoster, NotifyFakes


def endpoint(endpoint_id: str = "whep_1", events: list[str] | None = None, **extra: Any) -> WebhookEndpointRecord:
    return WebhookEndpointRecord(
        endpointId=endpoint_id,
        userId="u1",
        url=f"https://example.com/{endpoint_id}",
        events=events or [],
        secret=rules.new_secret(),
        createdAt=ids.now_iso(),
        **extra,
    )


def finished_batch(services: NotifyFakes, **extra: Any) -> BatchRecord:
    now = ids.now_iso()
    batch = BatchRecord(
        batchId="batch_1",
        userId="u1",
        type="text",
        status=BatchStatus.COMPLETED,
        model="m",
        createdAt=now,
        updatedAt=now,
        completedAt=now,
        requestCount=2,
        successCount=1,
        failCount=1,
        unitPrice=Decimal("0.5"),
        creditCost=Decimal(1),
        refundedCredits=Decimal("0.5"),
        **extra,
    )
    items = [
        ItemRecord(batchId="batch_1", itemId="gen_1_00", index=0, clientId="a", status=ItemStatus.SUCCESS, text="hi"),
        ItemRecord(batchId="batch_1", itemId="gen_1_01", index=1, clientId="b", status=ItemStatus.FAILED, error="no"),
    ]
    services.store.add(batch, items)
    return batch


# --- rules ----------------------------------------------------------------------------------------
def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # The example of the Standard Webhooks specification / reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signature = rules.sign([secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize(
    ("events", "event_type", "expected"),
    [
        (None, "batch.completed", True),
        ([], "batch.failed", True),
        (["batch.failed"], "batch.completed", False),
        (None, "batch.item.succeeded", False),
        (["batch.item.succeeded"], "batch.item.succeeded", True),
        (["batch.item.succeeded"], "batch.completed", False),
        (["batch.item.failed"], "webhook.test", True),
    ],
)
def test_batch_events_go_everywhere_unless_narrowed_item_events_only_by_name(events, event_type, expected) -> None:
    assert rules.subscribed(events, event_type) is expected


def test_retry_delays_grow_then_stop_and_scale() -> None:
    assert [rules.retry_delay(n, 1.0) for n in range(1, 8)] == [5, 60, 300, 1800, 7200, 21600, None]
    assert rules.retry_delay(2, 0.01) == pytest.approx(0.6)


def test_a_rotated_out_secret_signs_only_during_the_overlap() -> None:
    now = datetime.now(UTC)
    recent = ids.iso(now - timedelta(hours=23))
    old = ids.iso(now - timedelta(hours=25))
    assert rules.signing_secrets("new", "old", recent, now) == ["new", "old"]
    assert rules.signing_secrets("new", "old", old, now) == ["new"]


def resolver(table: dict[str, list[str]]):
    return lambda host, port: table.get(host) or [host]


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/h",
        "https://10.1.2.3/h",
        "https://172.16.5.4/h",
        "https://172.31.255.255/h",
        "https://192.168.1.1/h",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/h",
        "https://[fd00::1]/h",
        "https://[fe80::1]/h",
        "https://[::ffff:127.0.0.1]/h",
        "https://[::ffff:10.0.0.1]/h",
        "https://224.0.0.1/h",
        "https://0.0.0.0/h",
        "https://240.0.0.1/h",
        "https://100.64.0.1/h",
        "https://internal.example/h",  # resolves to a private address
        "https://mixed.example/h",  # one public, one private address: refused
        "http://93.184.216.34/h",  # plain http
        "https://user:pw@93.184.216.34/h",
    ],
)
def test_ssrf_table_refused_without_private_targets(url: str) -> None:
    table = {"internal.example": ["10.0.0.5"], "mixed.example": ["93.184.216.34", "192.168.0.9"]}
    with pytest.raises(rules.TargetRefused):
        rules.resolve_target(url, allow_private=False, resolve=resolver(table))


# Every IPv6 form that carries an IPv4 address, each around a loopback, link-local (the metadata
# service), private and shared-space address: the embedded address decides.
IPV6_EMBEDDING_IPV4 = [
    pytest.param("2002:7f00:1::", id="6to4-loopback"),
    pytest.param("2002:a9fe:a9fe::", id="6to4-metadata"),
    pytest.param("2002:0a00:0001::1", id="6to4-private"),
    pytest.param("2002:c0a8:0101:1::", id="6to4-private-subnet"),
    pytest.param("2002:6440:1::", id="6to4-shared-space"),
    # Teredo: server 65.54.227.120, client address XOR-ed with ones (RFC 4380's example, client 192.0.2.45)
    pytest.param("2001:0:4136:e378:8000:63bf:3fff:fdd2", id="teredo-documentation"),
    pytest.param("2001:0:4136:e378:8000:63bf:80ff:fffe", id="teredo-loopback"),  # ~7f00:0001 = 80ff:fffe
    pytest.param("2001:0:4136:e378:8000:63bf:5601:5601", id="teredo-metadata"),  # ~a9fe:a9fe
    pytest.param("64:ff9b::7f00:1", id="nat64-loopback"),
    pytest.param("64:ff9b::a9fe:a9fe", id="nat64-metadata"),
    pytest.param("64:ff9b::a00:1", id="nat64-private"),
    pytest.param("64:ff9b:1::a00:1", id="nat64-local-use-96"),
    pytest.param("64:ff9b:1:0:a:0:100::", id="nat64-local-use-64"),
    pytest.param("64:ff9b:1:0:7f:0:100::", id="nat64-local-use-64-loopback"),
    pytest.param("::ffff:127.0.0.1", id="mapped-loopback"),
    pytest.param("::ffff:169.254.169.254", id="mapped-metadata"),
    pytest.param("::ffff:a00:1", id="mapped-private-hex"),
    pytest.param("::127.0.0.1", id="compatible-loopback"),
    pytest.param("::169.254.169.254", id="compatible-metadata"),
    pytest.param("::10.0.0.1", id="compatible-private"),
]


@pytest.mark.parametrize("address", IPV6_EMBEDDING_IPV4)
def test_ipv6_addresses_that_carry_a_refused_ipv4_address_are_refused(address: str) -> None:
    reason = rules.address_refused(address)
    assert reason is not None and "carries" in reason
    with pytest.raises(rules.TargetRefused):
        rules.resolve_target(f"https://[{address}]/h", allow_private=False, resolve=resolver({}))
    with pytest.raises(rules.TargetRefused):  # a name whose AAAA record is such an address
        rules.resolve_target("https://six.example/h", allow_private=False, resolve=resolver({"six.example": [address]}))


@pytest.mark.parametrize(
    ("address", "carried"),
    [
        ("2002:7f00:1::", "127.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
        ("64:ff9b:1:0:a:0:100::", "10.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("::10.0.0.1", "10.0.0.1"),
    ],
)
def test_the_embedded_ipv4_address_is_decoded(address: str, carried: str) -> None:
    import ipaddress

    decoded = [inner for _form, inner in rules.embedded_ipv4(ipaddress.IPv6Address(address))]
    assert ipaddress.IPv4Address(carried) in decoded


@pytest.mark.parametrize("address", ["::ffff:8.8.8.8", "2606:4700:4700::1111"])
def test_ipv6_addresses_of_public_hosts_are_accepted(address: str) -> None:
    assert rules.address_refused(address) is None


def test_public_https_is_accepted_and_the_checked_address_is_the_one_connected_to() -> None:
    found = rules.resolve_target(
        "https://hooks.example/h", allow_private=False, resolve=resolver({"hooks.example": ["93.184.216.34"]})
    )
    assert found == ("https", "hooks.example", 443, "93.184.216.34")


def test_private_targets_and_http_allowed_for_development() -> None:
    assert rules.resolve_target("http://127.0.0.1:8000/h", allow_private=True, resolve=resolver({}))[3] == "127.0.0.1"


# --- delivery decisions ---------------------------------------------------------------------------
def message(endpoint_id: str | None = "whep_1", **extra: Any) -> DeliverWebhook:
    return DeliverWebhook(
        eventId="evt_1_whep_1",
        type="batch.completed",
        userId="u1",
        batchId="batch_1",
        endpointId=endpoint_id,
        url="https://one-off.example/h",
        body='{"type":"batch.completed"}',
        **extra,
    )


def test_a_2xx_is_delivered_and_logged_without_a_next_attempt() -> None:
    services = NotifyFakes()
    services.notifications.endpoints["whep_1"] = endpoint()
    assert notify.deliver(services, message()) == "delivered"
    [logged] = services.notifications.deliveries
    assert (logged.statusCode, logged.attempt, logged.nextAttemptAt) == (200, 1, None)
    [(url, headers, _body)] = services.webhooks.calls
    assert url == "https://example.com/whep_1" and headers["webhook-id"] == "evt_1_whep_1"
    assert headers["webhook-signature"].startswith("v1,")
    assert services.notifier.later == []


def test_a_failure_queues_the_next_attempt_with_the_same_id_and_a_growing_delay() -> None:
    services = NotifyFakes(webhooks=FakePoster(500))
    services.notifications.endpoints["whep_1"] = endpoint()
    assert notify.deliver(services, message(attempt=2)) == "retry"
    [(again, delay)] = services.notifier.later
    assert (again.eventId, again.attempt, delay) == ("evt_1_whep_1", 3, 60)
    assert again.notBefore == services.notifications.deliveries[0].nextAttemptAt


def test_a_wait_beyond_sqs_delay_is_chained_through_not_before() -> None:
    services = NotifyFakes(webhooks=FakePoster(503))
    services.notifications.endpoints["whep_1"] = endpoint()
    notify.deliver(services, message(attempt=4))  # next in 2 h
    [(again, delay)] = services.notifier.later
    assert delay == constants.SQS_MAX_DELAY_SECONDS
    assert notify.deliver(services, again) == "deferred"  # woken early: waits again, sends nothing
    assert len(services.webhooks.calls) == 1


def test_after_the_last_delay_it_gives_up() -> None:
    services = NotifyFakes(webhooks=FakePoster(None))
    services.notifications.endpoints["whep_1"] = endpoint()
    assert notify.deliver(services, message(attempt=7)) == "gave_up"
    assert services.notifier.later == []


def test_410_disables_and_a_disabled_or_deleted_endpoint_is_dropped() -> None:
    services = NotifyFakes(webhooks=FakePoster(410))
    services.notifications.endpoints["whep_1"] = endpoint()
    assert notify.deliver(services, message()) == "disabled"
    assert services.notifications.disabled == ["whep_1"] and services.notifier.later == []
    assert notify.deliver(services, message()) == "dropped"
    assert notify.deliver(services, message(endpoint_id="whep_gone")) == "dropped"
    assert len(services.webhooks.calls) == 1


def test_a_one_off_url_is_signed_with_the_account_secret() -> None:
    services = NotifyFakes()
    assert notify.deliver(services, message(endpoint_id=None)) == "delivered"
    url, headers, body = services.webhooks.calls[0]
    expected = rules.sign(
        [services.notifications.account_secret("u1")], "evt_1_whep_1", int(headers["webhook-timestamp"]), body
    )
    assert url == "https://one-off.example/h" and headers["webhook-signature"] == expected


# --- the relay ------------------------------------------------------------------------------------
def outbox(batch_event: str | None = None, item_event: str | None = None, indexes: list[int] | None = None):
    return OutboxRecord(
        eventId="evt_9",
        batchId="batch_1",
        at=ids.now_iso(),
        batchEvent=batch_event,
        itemEvent=item_event,
        itemIndexes=indexes or [],
    )


def test_relay_fans_a_batch_event_out_to_endpoints_the_one_off_url_and_email_then_deletes_the_row() -> None:
    services = NotifyFakes()
    finished_batch(services, webhookUrl="https://one-off.example/h", notifyEmail="me@example.com")
    services.notifications.endpoints.update(
        {
            "whep_all": endpoint("whep_all"),
            "whep_items": endpoint("whep_items", ["batch.item.succeeded"]),
            "whep_off": endpoint("whep_off", disabledAt=ids.now_iso()),
        }
    )
    services.store.outbox.append(outbox("batch.completed"))
    assert notify.relay_outbox(services) == 1
    webhooks = [m for m in services.notifier.sent if isinstance(m, DeliverWebhook)]
    assert sorted((m.endpointId or "url", m.eventId) for m in webhooks) == [
        ("url", "evt_9_url"),
        ("whep_all", "evt_9_whep_all"),
    ]
    [email] = [m for m in services.notifier.sent if isinstance(m, SendEmail)]
    assert email.to == "me@example.com"
    # the end event also asks for the batch's results manifest, once
    assert [m for m in services.notifier.sent if isinstance(m, WriteResultsManifest)] == [
        WriteResultsManifest(action="manifest", batchId="batch_1")
    ]
    assert services.store.outbox == []


def test_relay_sends_item_events_only_to_subscribers() -> None:
    services = NotifyFakes()
    finished_batch(services)
    services.notifications.endpoints.update(
        {"whep_all": endpoint("whep_all"), "whep_items": endpoint("whep_items", ["batch.item.failed"])}
    )
    services.store.outbox.append(outbox(item_event="batch.item.failed", indexes=[1]))
    notify.relay_outbox(services)
    [sent] = services.notifier.sent
    assert sent.endpointId == "whep_items" and sent.eventId == "evt_9_1_whep_items"
    assert '"clientId":"b"' in sent.body and '"error":"no"' in sent.body


class CountingNotifications(FakeNotifications):
    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def list_endpoints(self, user_id: str) -> list[WebhookEndpointRecord]:
        self.calls["list_endpoints"] += 1
        return super().list_endpoints(user_id)


def counting_services() -> NotifyFakes:
    """Fakes that count the endpoint reads and the outbox claims (in `services.notifications.calls`)."""
    notifications = CountingNotifications()
    services = NotifyFakes(notifications=notifications)
    claim = services.store.claim_event

    def counted_claim(event: OutboxRecord, lease_seconds: int) -> bool:
        notifications.calls["claim_event"] += 1
        return claim(event, lease_seconds)

    services.store.claim_event = counted_claim  # type: ignore[method-assign]
    return services


def item_events(count: int) -> list[OutboxRecord]:
    return [
        OutboxRecord(
            eventId=f"evt_{n}", batchId="batch_1", at=ids.now_iso(), itemEvent="batch.item.succeeded", itemIndexes=[0]
        )
        for n in range(count)
    ]


def test_a_pass_reads_the_owner_and_endpoints_once_and_drops_item_events_nobody_named_unclaimed() -> None:
    services = counting_services()
    finished_batch(services)
    services.notifications.endpoints["whep_all"] = endpoint("whep_all")  # batch events only
    services.store.outbox.extend([*item_events(40), outbox("batch.completed")])
    reads = Counter()
    get_batch = services.store.get_batch

    def counted_get_batch(batch_id: str, consistent: bool = True):
        reads[batch_id] += 1
        return get_batch(batch_id, consistent)

    services.store.get_batch = counted_get_batch  # type: ignore[method-assign]
    assert notify.relay_outbox(services) == 41
    assert services.store.outbox == []
    assert services.notifications.calls == {"list_endpoints": 1, "claim_event": 1}  # the batch event's claim
    assert reads["batch_1"] == 2  # the owner once, and the batch event's fresh read
    assert [m.eventId for m in services.notifier.sent if isinstance(m, DeliverWebhook)] == ["evt_9_whep_all"]


def test_item_events_someone_named_are_claimed_and_sent_each_once() -> None:
    services = counting_services()
    finished_batch(services)
    services.notifications.endpoints["whep_items"] = endpoint("whep_items", ["batch.item.succeeded"])
    services.store.outbox.extend(item_events(3))
    assert notify.relay_outbox(services) == 3
    assert services.notifications.calls == {"list_endpoints": 1, "claim_event": 3}
    sent = [m.eventId for m in services.notifier.sent if isinstance(m, DeliverWebhook)]
    assert sent == ["evt_0_0_whep_items", "evt_1_0_whep_items", "evt_2_0_whep_items"]


def test_a_relay_that_fails_keeps_the_row_and_sends_the_same_ids_next_time() -> None:
    services = NotifyFakes()
    finished_batch(services)
    services.notifications.endpoints["whep_all"] = endpoint("whep_all")
    services.store.outbox.append(outbox("batch.completed"))
    services.notifier.fail = True
    with pytest.raises(RuntimeError):
        notify.relay_outbox(services)
    assert len(services.store.outbox) == 1
    services.notifier.fail = False
    claims_lapse = services.store.time() + notify.RELAY_LEASE_SECONDS + 1
    services.store.time = lambda: claims_lapse  # the failed relayer's claim lapses: the row is relayed again
    notify.relay_outbox(services)
    assert [m.eventId for m in services.notifier.sent if isinstance(m, DeliverWebhook)] == ["evt_9_whep_all"]


def test_the_email_carries_counts_refund_and_a_link(monkeypatch) -> None:
    monkeypatch.setenv(constants.ENV_RESULTS_BASE_URL, "https://api.example/v1")
    from batchgen.config import reset_caches

    reset_caches()
    services = NotifyFakes()
    finished_batch(services)
    assert notify.send_batch_email(services, SendEmail(action="email", eventId="e", batchId="batch_1", to="a@b")) == (
        "emailed"
    )
    [(to, subject, text)] = services.mailer.sent
    assert to == "a@b" and "completed" in subject
    assert "succeeded: 1; failed: 1" in text and "refunded: 0.5" in text
    assert "https://api.example/v1/batch/status/batch_1" in text
    reset_caches()


def test_a_name_that_does_not_resolve_is_accepted_at_registration_and_refused_at_delivery() -> None:
    """The OpenAPI document's own example (`https://example.com/...`) registers where DNS does not answer;
    each delivery resolves again and calls nothing it cannot check."""

    def no_dns(host: str, port: int) -> list[str]:
        raise OSError("no DNS here")

    rules.check_registration("https://example.com/hooks/batchgen", allow_private=False, resolve=no_dns)
    with pytest.raises(rules.TargetUnresolved):
        rules.resolve_target("https://example.com/hooks/batchgen", allow_private=False, resolve=no_dns)
    with pytest.raises(rules.TargetRefused):  # what does resolve is still checked at registration
        rules.check_registration("https://[2002:7f00:1::]/h", allow_private=False, resolve=no_dns)
    with pytest.raises(rules.TargetRefused):
        rules.check_registration("http://example.com/h", allow_private=False, resolve=no_dns)


def test_a_relay_slice_stops_at_its_event_budget_or_its_time_checked_per_event_and_asks_for_the_next() -> None:
    services = NotifyFakes()
    finished_batch(services)
    services.notifications.endpoints["whep_items"] = endpoint("whep_items", ["batch.item.succeeded"])
    services.store.outbox.extend(item_events(120))  # one page holds them all: the budget is per event
    sliced = notify.relay_slice(services, budget_seconds=1e9, max_events=50)
    assert sliced.relayed == 50 and sliced.more and services.notifier.relays == 1
    assert len(services.store.outbox) == 70
    ticks = iter(range(10_000))  # a clock that moves one second per look: a 5 s budget stops after 4 events
    sliced = notify.relay_slice(services, budget_seconds=5, clock=lambda: float(next(ticks)))
    assert sliced.relayed == 4 and sliced.more and services.notifier.relays == 2
    sliced = notify.relay_slice(services)  # the next slices finish the rest, then stop asking
    assert sliced.relayed == 66 and not sliced.more and services.notifier.relays == 2
    assert services.store.outbox == []
