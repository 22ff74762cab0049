"""Shared fixtures: the real local platform (Triton + functions + gateway) on free ports, and
real photographs (scikit-image's bundled ones)."""

from __future__ import annotations

import io
import logging

import pytest

from sai.platform import Platform, Settings, free_port


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    """The whole embedded platform, started once for the session: every model in
    model_repository/ on a real tritonserver, every function in stack.yml, the gateway, and the
    local S3 server object-classify reads from (`platform.s3`)."""
    logging.basicConfig(level=logging.INFO)
    settings = Settings(
        port=free_port(), triton_http_port=free_port(), triton_grpc_port=free_port(),
        triton_metrics_port=free_port(), with_s3=True, s3_port=free_port(), state_dir=tmp_path_factory.mktemp("sai-state"),
    )
    running = Platform(settings)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def gateway(platform) -> str:
    return platform.gateway_url


def encode(array_or_image, fmt: str = "JPEG", **save) -> bytes:
    from PIL import Image

    img = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


@pytest.fixture(scope="session")
def cat_jpeg() -> bytes:
    from skimage import data

    return encode(data.chelsea(), quality=92)


@pytest.fixture(scope="session")
def coffee_jpeg() -> bytes:
    from skimage import data

    return encode(data.coffee(), quality=92)
