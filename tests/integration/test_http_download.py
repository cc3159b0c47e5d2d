"""The shared image download over real HTTP on loopback: Range, ETag, If-Range, HEAD, refusals, resume."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from fota_server.records import Package
from tests.integration.test_http_fixtures import Lab, lab  # noqa: F401

pytestmark = pytest.mark.integration


def _path(lab: Lab, package: Package) -> str:
    """The download path with its token, as a device's check-in answer gives it (``/fw/<id>?t=<token>``)."""
    return lab.driver.download_url("d1", package, "")


def test_full_download_head_and_etag(lab: Lab) -> None:
    package, image = lab.add_image()
    path = _path(lab, package)
    with httpx.Client(base_url=lab.url, timeout=10) as client:
        full = client.get(path)
        assert full.status_code == 200 and full.content == image
        etag = full.headers["etag"]
        assert etag == f'"{package.sha256}"' and full.headers["accept-ranges"] == "bytes"
        head = client.head(path)
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == len(image)
        assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
        by_hash = client.get(f"/fw/sha256/{package.sha256}?t={lab.services.download_tokens.issue('d1', package.sha256)}")
        assert hashlib.sha256(by_hash.content).hexdigest() == package.sha256


def test_ranges(lab: Lab) -> None:
    package, image = lab.add_image()
    path = _path(lab, package)
    with httpx.Client(base_url=lab.url, timeout=10) as client:
        part = client.get(path, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == image[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(image)}"
        tail = client.get(path, headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == image[-10:]
        head = client.head(path, headers={"Range": "bytes=5-"})
        assert head.status_code == 206 and int(head.headers["content-length"]) == len(image) - 5
        many = client.get(path, headers={"Range": "bytes=0-1,5-6"})
        assert many.status_code == 416 and many.headers["content-range"] == f"bytes */{len(image)}"
        assert many.json()["error"] == "range_not_satisfiable"
        past = client.get(path, headers={"Range": f"bytes={len(image)}-"})
        assert past.status_code == 416
        stale = client.get(path, headers={"Range": "bytes=0-9", "If-Range": '"an-old-image"'})
        assert stale.status_code == 200 and stale.content == image
        fresh = client.get(path, headers={"Range": "bytes=0-9", "If-Range": f'"{package.sha256}"'})
        assert fresh.status_code == 206 and fresh.content == image[:10]


def test_unknown_images_are_404(lab: Lab) -> None:
    unknown = "0" * 64
    with httpx.Client(base_url=lab.url, timeout=10) as client:
        assert client.get("/fw/nope", params={"t": lab.services.download_tokens.issue("d1", unknown)}).status_code == 404
        assert client.get("/fw/sha256/xyz").status_code == 404
        answer = client.get(f"/fw/sha256/{unknown}", params={"t": lab.services.download_tokens.issue("d1", unknown)})
        assert answer.json()["error"] == "not_found"


def test_without_a_valid_token_an_image_is_401(lab: Lab) -> None:
    package, _ = lab.add_image()
    other, _ = lab.add_image(version_to="1.2.0")
    with httpx.Client(base_url=lab.url, timeout=10) as client:
        for url in (f"/fw/{package.package_id}", f"/fw/sha256/{package.sha256}", "/fw/nope",
                    f"/fw/{package.package_id}?t=garbage", _path(lab, other).replace(other.package_id, package.package_id)):
            for method in ("GET", "HEAD"):
                answer = client.request(method, url)
                assert answer.status_code == 401, (method, url)
                assert method == "HEAD" or answer.json()["error"] == "unauthorized"


def test_a_cut_download_resumes_with_range(lab: Lab) -> None:
    package, image = lab.add_image(payload=3_000_000)
    path = _path(lab, package)
    received = bytearray()
    with httpx.Client(base_url=lab.url, timeout=10) as client:
        with client.stream("GET", path) as response:
            etag = response.headers["etag"]
            for chunk in response.iter_bytes():
                received += chunk
                if len(received) >= 500_000:
                    break  # the connection is closed with the body half read
        assert len(received) < len(image)
        rest = client.get(path, headers={"Range": f"bytes={len(received)}-", "If-Range": etag})
        assert rest.status_code == 206
        assert bytes(received) + rest.content == image
        assert client.get("/health").status_code == 200
