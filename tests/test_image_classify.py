"""image-classify end to end: real photos over real HTTP through the gateway, the function
process and a real Triton serving EfficientNet-Lite0."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import requests
from helpers import encode
from PIL import Image

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def classify(gateway, data: bytes, content_type="image/jpeg", query="", **kw):
    return requests.post(
        f"{gateway}/function/image-classify{query}", data=data, headers={"Content-Type": content_type}, timeout=30, **kw
    )


def top_ids(response) -> list[int]:
    assert response.status_code == 200, response.text
    return [p["class_id"] for p in response.json()["predictions"]]


def test_cat_photo_has_a_cat_class_in_top_3(gateway, cat_jpeg):
    assert CAT_CLASSES & set(top_ids(classify(gateway, cat_jpeg))[:3])


def test_coffee_photo_is_espresso_with_the_documented_fields(gateway, coffee_jpeg):
    r = classify(gateway, coffee_jpeg)
    body = r.json()
    assert r.headers["Content-Type"].startswith("application/json")
    assert set(body) == {"model", "model_version", "predictions", "timings_ms"}
    assert body["model"] == "image_classifier" and body["model_version"] == "1"
    top = body["predictions"][0]
    assert (top["class_id"], top["label"]) == (ESPRESSO, "espresso")
    assert 0.5 < top["score"] <= 1.0
    scores = [p["score"] for p in body["predictions"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert set(body["timings_ms"]) == {"decode", "preprocess", "inference"}


@pytest.mark.parametrize("top_k", [1, 7, 20])
def test_top_k_from_the_query_string(gateway, coffee_jpeg, top_k):
    assert len(top_ids(classify(gateway, coffee_jpeg, query=f"?top_k={top_k}"))) == top_k


@pytest.mark.parametrize(
    "fmt,save",
    [("PNG", {}), ("WEBP", {"quality": 90}), ("GIF", {}), ("BMP", {}), ("TIFF", {"compression": "tiff_lzw"})],
)
def test_other_formats(gateway, fmt, save):
    from skimage import data

    assert top_ids(classify(gateway, encode(data.coffee(), fmt, **save), f"image/{fmt.lower()}"))[0] == ESPRESSO


def test_the_readme_curl_command(gateway, cat_jpeg, tmp_path):
    """Exactly what the README tells users to run (curl labels the body form-urlencoded)."""
    import json
    import subprocess

    (tmp_path / "cat.jpg").write_bytes(cat_jpeg)
    out = subprocess.run(
        ["curl", "-sS", "--data-binary", "@cat.jpg", f"{gateway}/function/image-classify"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert CAT_CLASSES & {p["class_id"] for p in json.loads(out)["predictions"][:3]}


def test_multipart_upload(gateway, coffee_jpeg):
    r = requests.post(f"{gateway}/function/image-classify", files={"file": ("coffee.jpg", coffee_jpeg, "image/jpeg")}, timeout=30)
    assert top_ids(r)[0] == ESPRESSO


def test_json_base64_with_top_k(gateway, coffee_jpeg):
    payload = {"image": base64.b64encode(coffee_jpeg).decode(), "top_k": 2}
    r = requests.post(f"{gateway}/function/image-classify", json=payload, timeout=30)
    assert top_ids(r)[0] == ESPRESSO and len(r.json()["predictions"]) == 2


def test_octet_stream_and_missing_content_type(gateway, coffee_jpeg):
    assert top_ids(classify(gateway, coffee_jpeg, "application/octet-stream"))[0] == ESPRESSO
    r = requests.post(f"{gateway}/function/image-classify", data=coffee_jpeg, headers={"Content-Type": ""}, timeout=30)
    assert top_ids(r)[0] == ESPRESSO


def test_exif_orientation_is_honoured(gateway):
    """A photo stored rotated with an EXIF 'rotate 90' tag must classify like the upright one."""
    from skimage import data

    upright = Image.fromarray(data.coffee())
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    tagged = encode(stored, quality=92, exif=exif)
    untagged = encode(stored, quality=92)
    assert top_ids(classify(gateway, tagged))[0] == ESPRESSO
    # Without the tag the sideways cup is seen differently: the tag is what made it right.
    assert (
        classify(gateway, untagged).json()["predictions"][0]["score"]
        < classify(gateway, tagged).json()["predictions"][0]["score"]
    )


@pytest.mark.parametrize("mode", ["CMYK", "P", "L", "RGBA", "I;16"])
def test_any_mode_is_converted(gateway, mode):
    from skimage import data

    img = Image.fromarray(data.coffee())
    if mode == "I;16":
        grey = np.asarray(img.convert("L"), dtype=np.uint16) * 257
        img, fmt = Image.fromarray(grey), "PNG"
        assert img.mode.startswith("I")
    else:
        img, fmt = img.convert(mode), ("JPEG" if mode == "CMYK" else "PNG")
    r = classify(gateway, encode(img, fmt), f"image/{fmt.lower()}")
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 5
    if mode in ("CMYK", "P", "RGBA"):  # colour kept: still espresso
        assert top_ids(r)[0] == ESPRESSO
