"""An in-memory Cloudinary."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Uploaded:
    public_id: str
    secure_url: str


class FakeCdn:
    def __init__(self) -> None:
        self.assets: dict[str, bytes] = {}
        self.fail: Exception | None = None

    def upload_image(self, data: bytes, public_id: str, tags: list[str]) -> Uploaded:
        if self.fail is not None:
            raise self.fail
        self.assets[public_id] = data
        return Uploaded(public_id, f"https://cdn.test/{public_id}.png")

    def destroy_images(self, public_ids: list[str]) -> None:
        for public_id in public_ids:
            self.assets.pop(public_id, None)
