"""Shared fixtures: the real local platform (Triton + functions + gateway) on free ports, real
photographs (scikit-image's bundled ones) and a callback receiver. Helpers are in helpers.py.

tests/unit/ needs none of the servers; tests at the top level start the platform (once per
session) or their own processes."""

from __future__ import annotations

import logging

import pytest
from helpers import Receiver, encode, running_platform

from sai.state import free_port


@pytest.fixture(scope="session")
def platform(tmp_path_factory):
    """The whole embedded platform, started once for the session, with the local S3 server
    object-classify reads from (`platform.s3`). Never stopped or broken by a test: the outage
    tests start their own (outage_platform)."""
    logging.basicConfig(level=logging.INFO)
    with running_platform(tmp_path_factory.mktemp("sai-state"), with_s3=True, s3_port=free_port()) as running:
        yield running


@pytest.fixture(scope="module")
def outage_platform(tmp_path_factory):
    """A platform of its own for tests that stop Triton."""
    with running_platform(tmp_path_factory.mktemp("sai-outage")) as running:
        yield running


@pytest.fixture(scope="session")
def gateway(platform) -> str:
    return platform.gateway_url


@pytest.fixture(scope="session")
def cat_jpeg() -> bytes:
    from skimage import data

    return encode(data.chelsea(), quality=92)


@pytest.fixture(scope="session")
def coffee_jpeg() -> bytes:
    from skimage import data

    return encode(data.coffee(), quality=92)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()
