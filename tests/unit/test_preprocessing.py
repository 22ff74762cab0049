"""Unit tests of the functions' shared preprocessing and request parsing (no servers)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import Event, encode
from PIL import Image

from common import imaging, request
from common.errors import FunctionError, TritonUnavailable, error_response, handler_errors

CONFIG = {
    "max_batch_size": 8,
    "input": [{"name": "image", "data_type": "TYPE_UINT8", "dims": ["224", "224", "3"]}],
    "parameters": {"resize_short_side": {"string_value": "256"}, "resize_filter": {"string_value": "bicubic"}},
}


def test_spec_comes_from_the_model_config():
    spec = imaging.ImageSpec(CONFIG)
    assert (spec.input, spec.height, spec.width, spec.short_side, spec.channels_first) == ("image", 224, 224, 256, False)
    chw = {
        **CONFIG,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [3, 32, 48]}],
        "parameters": {"mean": {"string_value": "0.5,0.5,0.5"}, "std": {"string_value": "0.5,0.5,0.5"}},
    }
    t = imaging.ImageSpec(chw).tensor(Image.new("RGB", (100, 80), (255, 0, 0)))
    assert t.shape == (3, 32, 48) and t.dtype == np.float32
    assert np.allclose(t[0], 1.0) and np.allclose(t[1], -1.0)


def _config(**input_fields) -> dict:
    inp = {**CONFIG["input"][0], **input_fields}
    return {"name": "m", **CONFIG, "input": [inp]}


def test_layout_comes_from_the_format_when_the_config_gives_one():
    """A 3x224x3 input: only `format` can tell which end holds the channels."""
    assert imaging.ImageSpec(_config(dims=[3, 224, 3], format="FORMAT_NCHW")).channels_first
    assert not imaging.ImageSpec(_config(dims=[224, 224, 3], format="FORMAT_NHWC")).channels_first
    assert imaging.ImageSpec(_config(dims=[3, 224, 224])).channels_first  # no format: the 3-channel end
    unbatched = {**_config(dims=[1, 3, 224, 224]), "max_batch_size": 0}  # the batch of one is in dims
    assert imaging.ImageSpec(unbatched).height == 224


@pytest.mark.parametrize(
    ("config", "says"),
    [
        (_config(data_type="TYPE_FP16"), "input 'image' is TYPE_FP16; the function sends TYPE_UINT8 or TYPE_FP32"),
        (_config(dims=[3, 224, 3]), "do not say which axis holds the 3 channels: set format"),
        (_config(dims=[224, 224]), "to have 3 dimensions (CHW or HWC)"),
        (_config(dims=[224, 224, 3], format="FORMAT_NCHW"), "has 224 channels"),
        (_config(format="FORMAT_NC"), "neither FORMAT_NCHW nor FORMAT_NHWC"),
        (_config(dims=[-1, -1, 3]), "variable height or width"),
        ({**_config(dims=[3, 224, 224]), "max_batch_size": 0}, "without batching"),
        ({**_config(), "input": []}, "expecting 1 input, the config has 0"),
        ({**_config(), "parameters": {"resize_filter": {"string_value": "sinc"}}}, "resize_filter 'sinc' is not one of"),
        (
            {**_config(), "parameters": {"resize_short_side": {"string_value": "big"}}},
            "resize_short_side 'big' is not an integer",
        ),
        ({**_config(), "parameters": {"resize_short_side": {"string_value": "100"}}}, "smaller than the 224x224 crop"),
        ({**_config(), "parameters": {"mean": {"string_value": "0.5,0.5"}}}, "mean '0.5,0.5' is not three numbers"),
        ({**_config(), "parameters": {"std": {"string_value": "0.5,0,0.5"}}}, "std has a zero"),
    ],
)
def test_a_config_the_function_cannot_use_is_refused_with_the_reason(config, says):
    """Checked when read, as Triton's image_client.py parse_model does: a 500 naming the problem
    (an FP16 input was a bare KeyError)."""
    with pytest.raises(FunctionError) as info:
        imaging.ImageSpec(config)
    assert (info.value.status, info.value.code) == (500, "unsupported_model")
    assert says in info.value.message and info.value.message.startswith("model ")


def test_every_problem_of_a_config_is_named_at_once():
    config = {**_config(data_type="TYPE_FP16"), "parameters": {"resize_filter": {"string_value": "sinc"}}}
    with pytest.raises(FunctionError) as info:
        imaging.ImageSpec(config)
    assert "TYPE_FP16" in info.value.message and "sinc" in info.value.message


def test_cropped_resize_matches_resize_then_crop():
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((640, 427))
    fast = np.asarray(imaging.resize_center_crop(img, (224, 224), 256, Image.BICUBIC), dtype=np.float32)
    full = img.resize((round(640 * 256 / 427), 256), Image.BICUBIC)  # the textbook way: resize all, then crop
    left, top = (full.width - 224) // 2, (full.height - 224) // 2
    slow = np.asarray(full.crop((left, top, left + 224, top + 224)), dtype=np.float32)
    assert fast.shape == (224, 224, 3)
    assert np.mean(np.abs(fast - slow)) < 3.0  # same picture up to sub-pixel alignment


def test_jpeg_draft_keeps_enough_resolution():
    big = encode(Image.new("RGB", (4000, 3000), (10, 200, 30)), quality=80)
    img = imaging.decode(big, min_short_side=256)
    assert min(img.size) >= 256 and img.size[0] < 4000  # decoded at a reduced scale, not below target


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "L", "1", "I;16", "I", "F"])
def test_to_rgb_handles_every_mode(mode):
    img = Image.new("RGB", (8, 8), (200, 100, 50))
    img = Image.fromarray(np.full((8, 8), 40000, np.uint16)) if mode == "I;16" else img.convert(mode)
    out = imaging.to_rgb(img)
    assert out.mode == "RGB" and out.size == (8, 8)


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert imaging.to_rgb(img).getpixel((0, 0)) == (255, 255, 255)


def test_gif_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    r, g, b = imaging.decode(buf.getvalue()).getpixel((8, 8))
    assert r > 200 and b < 50


def test_pixel_limit(monkeypatch):
    monkeypatch.setenv("MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(FunctionError) as err:
        imaging.decode(encode(Image.new("RGB", (40, 40)), "PNG"))
    assert (err.value.status, err.value.code) == (413, "image_too_large")


def test_int_param():
    assert request.int_param(Event(query={"k": "7"}), "k", 5, 1, 20) == 7
    assert request.int_param(Event(), "k", 5, 1, 20) == 5
    for bad in ("0", "21", "x", "1.5"):
        with pytest.raises(FunctionError):
            request.int_param(Event(query={"k": bad}), "k", 5, 1, 20)
    with pytest.raises(FunctionError):
        request.int_param(Event(), "k", 5, 1, 20, override=True)


def test_base64_field_accepts_data_urls():
    assert request.base64_field({"image": "data:image/png;base64,aGk="}, "image") == b"hi"
    with pytest.raises(FunctionError):
        request.base64_field({"image": 5}, "image")


def test_multipart_named_and_unnamed_parts():
    body = (
        b'--B\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
        b'--B\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n\x00\x01\x02\r\n--B--\r\n"
    )
    event = Event(body, "multipart/form-data; boundary=B")
    assert request.multipart_file(event) == b"\x00\x01\x02"
    assert request.multipart_file(event, "note") == b"hello"


def test_body_limit(monkeypatch):
    monkeypatch.setenv("MAX_BODY_BYTES", "10")
    with pytest.raises(FunctionError) as err:
        request.body(Event(b"x" * 11))
    assert err.value.status == 413


def test_handler_errors_never_leak_a_traceback():
    @handler_errors
    def handle(event, context):
        raise KeyError("secret internals")

    res = handle(Event(), None)
    assert res["statusCode"] == 500 and "secret" not in str(res["body"])
    res = error_response(TritonUnavailable("down", retry_after=7))
    assert res["statusCode"] == 503 and res["headers"]["Retry-After"] == "7"
