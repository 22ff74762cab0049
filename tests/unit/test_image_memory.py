"""Memory a single image may cost a function: decoding is bounded per format, measured as the
peak RSS growth of a fresh process that decodes one picture and builds the model's tensor, as
image-classify does (the figures in the comments are from this 2-core machine)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT, encode
from PIL import Image, ImageDraw

PROBE = """
import resource, sys
from common import imaging
data = open(sys.argv[1], "rb").read()
spec = imaging.ImageSpec({"max_batch_size": 1, "input": [{"name": "x", "dims": ["224", "224", "3"], "data_type": "TYPE_UINT8"}],
                          "parameters": {"resize_short_side": {"string_value": "256"}}})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    shape = spec.tensor(imaging.decode(data, min_short_side=spec.short_side)).shape
    status = 200
except imaging.FunctionError as exc:
    status = exc.status
grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(status, round(grown_mb))
"""


def picture(side: int, fmt: str) -> bytes:
    img = Image.new("RGBA", (side, side), (200, 120, 40, 255))
    ImageDraw.Draw(img).ellipse((side // 4, side // 4, 3 * side // 4, 3 * side // 4), fill=(20, 60, 200, 128))
    return encode(img if fmt == "PNG" else img.convert("RGB"), fmt, **({"optimize": True} if fmt == "PNG" else {"quality": 85}))


def probe(tmp_path, data: bytes) -> tuple[int, int]:
    path = tmp_path / "picture"
    path.write_bytes(data)
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True, cwd=ROOT)
    status, grown = out.stdout.split()
    return int(status), int(grown)


@pytest.mark.parametrize(
    "side, fmt, status, bound_mb",
    [
        (4096, "PNG", 200, 200),  # the largest accepted PNG (16.8 MP, RGBA): ~130 MB (320 MB before reduce_early)
        (7000, "PNG", 413, 20),  # 49 MP in 224 KB: refused before decoding (it took 935 MB)
        (7000, "JPEG", 200, 40),  # 49 MP JPEG: decoded at a reduced DCT scale, ~7 MB
    ],
)
def test_decoding_memory_is_bounded(tmp_path, side, fmt, status, bound_mb):
    got_status, grown_mb = probe(tmp_path, picture(side, fmt))
    assert got_status == status
    assert grown_mb < bound_mb, f"{side}x{side} {fmt} grew the process by {grown_mb} MB"
