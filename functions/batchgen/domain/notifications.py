"""Notification rules: which events exist, who gets them, how they are signed, when a failed
delivery is tried again, and which webhook targets are refused. Pure: no I/O beyond name resolution
passed in by the caller."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from batchgen import constants
from batchgen.domain.errors import InvalidInput

BATCH_EVENTS = ("batch.completed", "batch.failed", "batch.cancelled", "batch.expired")
ITEM_EVENTS = ("batch.item.succeeded", "batch.item.failed")
TEST_EVENT = "webhook.test"
ALL_EVENTS = BATCH_EVENTS + ITEM_EVENTS
SECRET_PREFIX = "whsec_"


def subscribed(endpoint_events: Sequence[str] | None, event_type: str) -> bool:
    """Batch events go to every endpoint unless `events` narrows them; item events only by name."""
    if event_type == TEST_EVENT:
        return True
    if event_type in ITEM_EVENTS:
        return bool(endpoint_events) and event_type in (endpoint_events or ())
    return not endpoint_events or event_type in endpoint_events


def check_events(events: Sequence[str] | None) -> list[str]:
    """The subscription as stored (empty: every batch event); 400 for a name that is not an event."""
    unknown = [name for name in events or () if name not in ALL_EVENTS]
    if unknown:
        raise InvalidInput(
            f"Unknown event '{unknown[0]}'; use any of {', '.join(ALL_EVENTS)}.",
            [{"loc": ["body", "events"], "msg": f"unknown event {name}"} for name in unknown],
        )
    return list(dict.fromkeys(events or ()))


# --- secrets and signatures (Standard Webhooks) ---------------------------------------------------
def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secrets_in_use: Iterable[str], message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per secret, space separated."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()
        for secret in secrets_in_use
    )


def signing_secrets(current: str, previous: str | None, rotated_at: str | None, now: datetime) -> list[str]:
    """The current secret, plus the rotated-out one for `WEBHOOK_SECRET_OVERLAP_SECONDS` after a rotation."""
    found = [current]
    if previous and rotated_at:
        rotated = datetime.fromisoformat(rotated_at.replace("Z", "+00:00"))
        if now - rotated < timedelta(seconds=constants.WEBHOOK_SECRET_OVERLAP_SECONDS):
            found.append(previous)
    return found


# --- retries --------------------------------------------------------------------------------------
def retry_delay(attempt: int, scale: float) -> float | None:
    """Seconds before attempt `attempt + 1` after attempt `attempt` failed; None: give up."""
    delays = constants.WEBHOOK_RETRY_DELAYS_SECONDS
    if attempt < 1 or attempt > len(delays):
        return None
    return delays[attempt - 1] * scale


def succeeded(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


def disables_endpoint(status_code: int | None) -> bool:
    return status_code == 410


# --- targets (SSRF) -------------------------------------------------------------------------------
class TargetRefused(InvalidInput):
    """A webhook URL the service will not call."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"The webhook URL is refused: {reason}.", [{"loc": ["body", "url"], "msg": reason}])
        self.reason = reason


class TargetUnresolved(TargetRefused):
    """The host did not resolve: nothing to connect to, and nothing yet to judge."""


# IPv6 ranges that carry an IPv4 address inside them; a packet to one may reach that IPv4 address
# (through a 6to4 relay, a Teredo relay or a NAT64 gateway), so the embedded address is checked too.
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# Where RFC 6052 puts the IPv4 address after a NAT64 prefix of each length a local-use prefix may have
# (its operator picks the length): bits 64-71 are skipped, so an address may straddle them.
_NAT64_LOCAL_PREFIX_LENGTHS = (96, 64, 56, 48)


def _nat64_embedded(value: int, prefix_length: int) -> ipaddress.IPv4Address:
    if prefix_length == 96:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    without_u_octet = ((value >> 72) << 64) | (value & ((1 << 64) - 1))  # 120 bits: bits 64-71 dropped
    return ipaddress.IPv4Address((without_u_octet >> (120 - prefix_length - 32)) & 0xFFFFFFFF)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """Every IPv4 address an IPv6 address carries, with the name of the form that carries it."""
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if ip.ipv4_mapped is not None:
        found.append(("IPv4-mapped", ip.ipv4_mapped))
    elif ip in _IPV4_COMPATIBLE:
        found.append(("IPv4-compatible", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    if ip in _SIX_TO_FOUR and ip.sixtofour is not None:
        found.append(("6to4", ip.sixtofour))
    if ip in _TEREDO and ip.teredo is not None:
        server, client = ip.teredo  # the client's address, un-XOR-ed
        found += [("Teredo client", client), ("Teredo server", server)]
    if ip in _NAT64_WELL_KNOWN:
        found.append(("NAT64", _nat64_embedded(int(ip), 96)))
    if ip in _NAT64_LOCAL_USE:
        found += [("local-use NAT64", _nat64_embedded(int(ip), length)) for length in _NAT64_LOCAL_PREFIX_LENGTHS]
    return found


def _range_refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    checks = (
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (ip.is_unspecified, "unspecified"),
        (not ip.is_global, "not globally routable"),
    )
    return next((reason for hit, reason in checks if hit), None)


def address_refused(address: str) -> str | None:
    """Why an address must not be called (None: a public unicast address). An IPv6 address that embeds
    an IPv4 one (IPv4-mapped or -compatible, 6to4, Teredo, NAT64) is refused when the IPv4 address is."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        for form, inner in embedded_ipv4(ip):
            reason = _range_refused(inner)
            if reason:
                return f"{address} carries {inner} ({form}), a {reason} address"
        if ip.ipv4_mapped is not None:  # the IPv4 address itself, in IPv6 notation: judged as that
            return None
        if ip in _NAT64_LOCAL_USE:  # its gateway is the operator's own network
            return f"{address} is a local-use NAT64 address, not globally routable"
    reason = _range_refused(ip)
    return f"{address} is a {reason} address" if reason else None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_url(url: str, *, allow_private: bool) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL: https only unless private targets are allowed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused("it is not a valid URL") from exc
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed or not parts.hostname:
        raise TargetRefused("only https:// URLs are accepted")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not accepted")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve_target(
    url: str, *, allow_private: bool, resolve: Callable[[str, int], list[str]]
) -> tuple[str, str, int, str]:
    """(scheme, host, port, the address to connect to): every address the name resolves to is checked,
    and the caller connects to the checked one (DNS cannot change between the check and the call)."""
    scheme, host, port = check_url(url, allow_private=allow_private)
    try:
        addresses = [str(ipaddress.ip_address(host))] if _is_ip_literal(host) else resolve(host, port)
    except OSError as exc:
        raise TargetUnresolved(f"{host} does not resolve") from exc
    if not addresses:
        raise TargetUnresolved(f"{host} does not resolve")
    if not allow_private:
        for address in addresses:
            reason = address_refused(address)
            if reason:
                raise TargetRefused(reason)
    return scheme, host, port, addresses[0]


def check_registration(url: str, *, allow_private: bool, resolve: Callable[[str, int], list[str]]) -> None:
    """At registration: the URL's form, and every address its host resolves to now. A name that does not
    resolve (yet, or from here) is accepted: every delivery resolves and checks it again, and calls
    nothing it refuses."""
    with contextlib.suppress(TargetUnresolved):
        resolve_target(url, allow_private=allow_private, resolve=resolve)


def now() -> datetime:
    return datetime.now(UTC)
