"""The Cloudinary emulator, driven through the official SDK exactly as the upload consumer uses it."""

from __future__ import annotations

import base64
import io
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cloudinary
import cloudinary.api
import cloudinary.uploader
import cloudinary.utils
import pytest
import requests
from cloudinary.exceptions import AuthorizationRequired, BadRequest, GeneralError

from local.emulators.cloudinary import CloudinaryEmulator, sniff_image

PUBLIC_ID = "batchgen/user1/batch_1/item_01"


def make_png(width: int = 4, height: int = 3, seed: int = 0) -> bytes:
    """A valid RGB PNG; ``seed`` changes the pixels so overwrites are distinguishable."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes([seed % 256, 0, 255]) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def make_jpeg_header(width: int, height: int) -> bytes:
    """JFIF APP0 + baseline SOF0 + EOI: enough for dimension sniffing, not for decoding."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def make_webp_header(kind: bytes, width: int, height: int) -> bytes:
    if kind == b"VP8 ":
        payload = b"\x00\x00\x00\x9d\x01\x2a" + struct.pack("<HH", width, height)
    elif kind == b"VP8L":
        payload = b"\x2f" + ((width - 1) | (height - 1) << 14).to_bytes(4, "little")
    else:
        payload = b"\x00" * 4 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + kind + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture(scope="module")
def server() -> Iterator[CloudinaryEmulator]:
    emulator = CloudinaryEmulator(cloud_name="local", api_key="local-key", api_secret="local-secret").start()
    yield emulator
    emulator.stop()


@pytest.fixture
def emu(server: CloudinaryEmulator) -> Iterator[CloudinaryEmulator]:
    """The shared emulator, emptied, with the SDK's global config pointed at it and restored after."""
    server.reset()
    saved_config = cloudinary._config  # the SDK keeps its config in a module global
    saved_values = dict(saved_config.__dict__)
    cloudinary.config(
        cloud_name=server.cloud_name,
        api_key=server.api_key,
        api_secret=server.api_secret,
        upload_prefix=server.base_url,
        secure=True,
    )
    yield server
    saved_config.__dict__.clear()
    saved_config.__dict__.update(saved_values)
    cloudinary._config = saved_config


def upload(data: object, **options: object) -> dict:
    return cloudinary.uploader.upload(data, public_id=PUBLIC_ID, overwrite=True, resource_type="image", **options)


def test_upload_bytes_returns_real_response_shape_and_serves_the_bytes(emu: CloudinaryEmulator) -> None:
    png = make_png(4, 3)

    result = upload(png, tags=["batch_1", "batch-character"])

    assert result["public_id"] == PUBLIC_ID
    assert (result["format"], result["width"], result["height"]) == ("png", 4, 3)
    assert result["resource_type"] == "image" and result["type"] == "upload"
    assert result["bytes"] == len(png) and result["placeholder"] is False
    assert isinstance(result["version"], int)
    assert result["tags"] == ["batch_1", "batch-character"]
    assert result["api_key"] == emu.api_key
    assert result["original_filename"] == "file"
    assert len(result["asset_id"]) == 32 and len(result["version_id"]) == 32 and len(result["etag"]) == 32
    assert len(result["signature"]) == 40
    assert time.strptime(result["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    expected_url = f"{emu.base_url}/local/image/upload/v{result['version']}/{PUBLIC_ID}.png"
    assert result["secure_url"] == result["url"] == expected_url

    served = requests.get(result["secure_url"], timeout=5)
    assert served.status_code == 200
    assert served.headers["Content-Type"] == "image/png"
    assert served.content == png
    unversioned = requests.get(f"{emu.base_url}/local/image/upload/{PUBLIC_ID}.png", timeout=5)
    assert unversioned.content == png

    stored = emu.assets[PUBLIC_ID]
    assert (stored.bytes, stored.format, stored.width, stored.height) == (png, "png", 4, 3)
    assert stored.tags == ("batch_1", "batch-character") and stored.uploads == 1
    assert emu.calls["upload"] == 1


def test_upload_file_objects_and_data_uri(emu: CloudinaryEmulator, tmp_path: Path) -> None:
    png = make_png(2, 2)
    path = tmp_path / "source_image.png"
    path.write_bytes(png)

    with path.open("rb") as handle:
        from_file = cloudinary.uploader.upload(handle, public_id="from_file")
    from_stream = cloudinary.uploader.upload(io.BytesIO(png), public_id="from_stream")
    from_uri = cloudinary.uploader.upload(
        "data:image/png;base64," + base64.b64encode(png).decode(), public_id="from_uri"
    )

    assert from_file["original_filename"] == "source_image"
    assert from_stream["original_filename"] == "stream"
    assert from_uri["original_filename"] == "file"
    for result in (from_file, from_stream, from_uri):
        assert result["width"] == 2
        assert requests.get(result["secure_url"], timeout=5).content == png


def test_overwrite_bumps_version_and_keeps_one_asset(emu: CloudinaryEmulator) -> None:
    first = upload(make_png(seed=1))
    second = upload(make_png(seed=2))

    assert second["version"] > first["version"]
    assert second["asset_id"] == first["asset_id"] and second["version_id"] != first["version_id"]
    assert list(emu.assets) == [PUBLIC_ID] and emu.assets[PUBLIC_ID].uploads == 2
    assert requests.get(second["secure_url"], timeout=5).content == make_png(seed=2)

    kept = cloudinary.uploader.upload(make_png(seed=3), public_id=PUBLIC_ID, overwrite=False)

    assert kept["existing"] is True and kept["version"] == second["version"]
    assert emu.assets[PUBLIC_ID].bytes == make_png(seed=2)


def test_folder_prefixes_public_id_and_tags_accept_a_string(emu: CloudinaryEmulator) -> None:
    result = cloudinary.uploader.upload(make_png(), folder="batchgen/u1", public_id="item", tags="a, b")

    assert result["public_id"] == "batchgen/u1/item"
    assert result["tags"] == ["a", "b"]


def test_generated_public_id_when_none_given(emu: CloudinaryEmulator) -> None:
    result = cloudinary.uploader.upload(make_png())

    assert len(result["public_id"]) == 20 and result["public_id"] in emu.assets


def test_jpeg_upload_is_detected_and_served_as_jpeg(emu: CloudinaryEmulator) -> None:
    jpeg = make_jpeg_header(640, 480)

    result = cloudinary.uploader.upload(jpeg, public_id="photo")

    assert (result["format"], result["width"], result["height"]) == ("jpg", 640, 480)
    served = requests.get(result["secure_url"], timeout=5)
    assert served.headers["Content-Type"] == "image/jpeg" and served.content == jpeg


@pytest.mark.parametrize("kind", [b"VP8 ", b"VP8L", b"VP8X"])
def test_webp_dimensions(kind: bytes) -> None:
    assert sniff_image(make_webp_header(kind, 300, 200)) == ("webp", 300, 200)


def test_non_image_is_rejected(emu: CloudinaryEmulator) -> None:
    with pytest.raises(BadRequest, match="Invalid image file"):
        upload(b"definitely not an image")

    assert emu.assets == {}


def test_wrong_secret_is_rejected_with_authorization_required(emu: CloudinaryEmulator) -> None:
    cloudinary.config(api_secret="wrong-secret")

    with pytest.raises(AuthorizationRequired, match="Invalid Signature"):
        upload(make_png())
    with pytest.raises(AuthorizationRequired, match="Invalid Signature"):
        cloudinary.uploader.destroy(PUBLIC_ID)

    assert emu.assets == {}


def test_unknown_api_key_and_cloud_are_rejected(emu: CloudinaryEmulator) -> None:
    with pytest.raises(AuthorizationRequired, match="Unknown API key"):
        upload(make_png(), api_key="someone-else")
    with pytest.raises(AuthorizationRequired, match="cloud_name"):
        upload(make_png(), cloud_name="other-cloud")


def test_sha256_signatures_are_accepted(emu: CloudinaryEmulator) -> None:
    cloudinary.config(signature_algorithm="sha256")

    assert upload(make_png())["public_id"] == PUBLIC_ID


def test_stale_timestamp_is_rejected(emu: CloudinaryEmulator) -> None:
    """The SDK always signs ``now()``, so this request is built by hand with the SDK's signer."""
    params = cloudinary.utils.sign_request({"timestamp": str(int(time.time()) - 2 * 3600), "public_id": "old"}, {})
    response = requests.post(
        f"{emu.base_url}/v1_1/local/image/upload",
        data=params,
        files={"file": ("f.png", make_png())},
        timeout=5,
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Stale request")


def test_destroy_then_url_is_gone(emu: CloudinaryEmulator) -> None:
    url = upload(make_png())["secure_url"]

    assert cloudinary.uploader.destroy(PUBLIC_ID, invalidate=True)["result"] == "ok"
    assert requests.get(url, timeout=5).status_code == 404
    assert cloudinary.uploader.destroy(PUBLIC_ID, invalidate=True)["result"] == "not found"
    assert emu.calls["destroy"] == 2


def test_admin_delete_resources(emu: CloudinaryEmulator) -> None:
    upload(make_png())

    result = cloudinary.api.delete_resources([PUBLIC_ID, "missing"])

    assert result["deleted"] == {PUBLIC_ID: "deleted", "missing": "not_found"}
    assert emu.assets == {}


def test_unknown_delivery_url_is_404(emu: CloudinaryEmulator) -> None:
    assert requests.get(f"{emu.base_url}/local/image/upload/v1/nothing.png", timeout=5).status_code == 404


def test_fault_injection_then_success(emu: CloudinaryEmulator) -> None:
    emu.inject_fault(status=500, count=2, operation="upload")
    emu.inject_fault(status=503, count=1, operation="destroy")

    for _ in range(2):
        with pytest.raises(GeneralError, match="General Error"):
            upload(make_png())
    assert upload(make_png())["public_id"] == PUBLIC_ID
    with pytest.raises(GeneralError):
        cloudinary.uploader.destroy(PUBLIC_ID)
    assert cloudinary.uploader.destroy(PUBLIC_ID)["result"] == "ok"
    assert emu.calls == {"upload": 3, "destroy": 2}


def test_clear_faults(emu: CloudinaryEmulator) -> None:
    emu.inject_fault(status=500, count=5, operation=None)
    emu.clear_faults()

    assert upload(make_png())["public_id"] == PUBLIC_ID


def test_latency_per_operation(emu: CloudinaryEmulator) -> None:
    emu.set_latency(1.0, operation="upload")  # wide margins: the machine may be busy

    started = time.monotonic()
    upload(make_png())
    assert time.monotonic() - started >= 1.0
    started = time.monotonic()
    cloudinary.uploader.destroy(PUBLIC_ID)
    assert time.monotonic() - started < 1.0

    emu.set_latency(0, operation="upload")
    started = time.monotonic()
    upload(make_png())
    assert time.monotonic() - started < 1.0


def test_ten_concurrent_uploads(emu: CloudinaryEmulator) -> None:
    emu.set_latency(1.0, operation="upload")
    barrier = threading.Barrier(10)

    def one(index: int) -> dict:
        barrier.wait()
        return cloudinary.uploader.upload(make_png(seed=index), public_id=f"batchgen/u/b/item_{index:02d}")

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(one, range(10)))

    assert time.monotonic() - started < 5.0  # served in parallel, not 10 x 1 s one after another
    assert len(emu.assets) == 10 and emu.calls["upload"] == 10
    for index, result in enumerate(results):
        assert requests.get(result["secure_url"], timeout=5).content == make_png(seed=index)


def test_cloudinary_url_carries_upload_prefix(emu: CloudinaryEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDINARY_CLOUD_NAME", raising=False)
    monkeypatch.setenv("CLOUDINARY_URL", emu.cloudinary_url)
    cloudinary.reset_config()  # the SDK reads CLOUDINARY_URL only when it builds its config

    assert cloudinary.config().upload_prefix == emu.base_url
    assert upload(make_png())["secure_url"].startswith(emu.base_url)
