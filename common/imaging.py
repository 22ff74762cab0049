"""Image decoding and preprocessing, parameterised by the model's Triton config.

Decoding accepts what photos arrive as (JPEG, PNG, WebP, GIF - first frame, BMP, TIFF), applies
EXIF orientation and turns any mode (CMYK, palette, 16-bit, alpha) into RGB. Decompression bombs
and truncated files are refused with 4xx errors before they cost memory or time.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import FunctionError
from .settings import setting

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG includes cameras' multi-picture (MPO) files
Image.init()  # register every format plugin now, not lazily on the first request

FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}


# Decompression-bomb guards: images with more pixels are refused before they are decoded. JPEGs
# decode at a reduced DCT scale (a 49-megapixel photo costs under 10 MB); other formats decode at
# full size, about 8 bytes a pixel at peak even with reduce_early, so their cap keeps 4 concurrent
# requests (the template's threads) well under a function's 1 Gi limit: 49 MP of PNG took 935 MB.
max_pixels = setting("MAX_IMAGE_PIXELS", int, 50_000_000, low=1)
max_full_decode_pixels = setting("MAX_FULL_DECODE_PIXELS", int, 4096 * 4096, low=1)


def decode(data: bytes, min_short_side: int = 0) -> Image.Image:
    """Bytes -> upright RGB image. With `min_short_side`, JPEGs are decoded at a reduced DCT scale
    that still keeps the short side >= min_short_side (much faster for camera-size photos)."""
    if not data:
        raise FunctionError(400, "empty_body", "no image data in the request")
    limit = max_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data), formats=FORMATS)
            if img.format != "JPEG":
                limit = min(limit, max_full_decode_pixels())
            if img.width * img.height > limit:
                raise Image.DecompressionBombError(f"{img.width}x{img.height} {img.format}")
            if min_short_side and img.format == "JPEG":
                scale = min_short_side / min(img.size)
                img.draft("RGB", (int(img.width * scale) + 1, int(img.height * scale) + 1))
            img.load()
            img = reduce_early(img, min_short_side)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise FunctionError(413, "image_too_large", f"image has too many pixels ({exc}); the limit is {limit}") from exc
    except UnidentifiedImageError as exc:
        raise FunctionError(415, "unsupported_image", f"not an image in a supported format ({', '.join(FORMATS)})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or corrupt files
        raise FunctionError(400, "invalid_image", f"image data is truncated or corrupt: {exc}") from exc
    return to_rgb(ImageOps.exif_transpose(img))


def reduce_early(img: Image.Image, min_short_side: int) -> Image.Image:
    """Shrink a decoded image by a whole factor (box filter, in C) while its short side stays >=
    min_short_side, before any mode conversion: other formats have no reduced decoding as JPEG
    does, and converting a full-size RGBA picture to RGB costs several copies of it."""
    factor = min(img.size) // min_short_side if min_short_side else 1
    if factor < 2:
        return img
    try:
        return img.reduce(factor)
    except ValueError:  # modes `reduce` does not take (palette, 16-bit): converted at full size
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16/32-bit greyscale: scale to 8 bits
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / top)).clip(0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):  # flatten alpha onto white, as viewers show it
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def resize_center_crop(img: Image.Image, crop: tuple[int, int], short_side: int, resample: int) -> Image.Image:
    """Resize so the short side is `short_side`, then centre-crop to `crop` (w, h) - done as one
    resize of just the cropped region of the source, which is the same picture for less work."""
    w, h = img.size
    scale = short_side / min(w, h)
    cw, ch = crop[0] / scale, crop[1] / scale  # crop size in source pixels
    left, top = (w - cw) / 2, (h - ch) / 2
    return img.resize(crop, resample, box=(left, top, left + cw, top + ch))


DTYPES = {"TYPE_UINT8": np.uint8, "TYPE_FP32": np.float32}  # what the function can send
LAYOUTS = {"FORMAT_NCHW": True, "FORMAT_NHWC": False}  # Triton's ModelInput.format -> channels first


def channels_first(dims: list[int], layout: str = "FORMAT_NONE") -> bool:
    """Whether an image input of `dims` (3, no batch) is CHW: its config's `format` says so, or,
    without one, the one end of `dims` that is 3 (RGB). ValueError when neither tells."""
    if layout in LAYOUTS:
        return LAYOUTS[layout]
    if layout != "FORMAT_NONE":
        raise ValueError(f"input format {layout} is neither FORMAT_NCHW nor FORMAT_NHWC")
    if (dims[0] == 3) == (dims[2] == 3):
        raise ValueError(f"dims {dims} do not say which axis holds the 3 channels: set format FORMAT_NCHW or FORMAT_NHWC")
    return dims[0] == 3


class ImageSpec:
    """What the model wants, read from its Triton config: input name, size, layout, dtype, resize,
    mean/std. The config is checked as it is read, as Triton's own image client does
    (triton-inference-server/client r24.10, src/python/examples/image_client.py, parse_model): one
    input of 3 dimensions besides the batch, CHW or HWC by its `format` (or the 3-channel end),
    a dtype the function sends, fixed sizes, parameters that parse. Every problem is named in one
    FunctionError (500 unsupported_model), never a bare KeyError."""

    def __init__(self, config: dict):
        name, problems = config.get("name", "the model"), []
        inputs = config.get("input") or []
        if len(inputs) != 1:
            raise unsupported_model(name, [f"expecting 1 input, the config has {len(inputs)}"])
        inp = inputs[0]
        self.input = inp["name"]
        dims = [int(d) for d in inp.get("dims", [])]
        if not int(config.get("max_batch_size") or 0):  # no batching: the batch of one is in dims
            if dims[:1] != [1]:
                problems.append(f"without batching (max_batch_size 0) input {self.input!r} must be [1, ...], not {dims}")
            dims = dims[1:]
        if inp.get("data_type") not in DTYPES:
            problems.append(f"input {self.input!r} is {inp.get('data_type')}; the function sends {' or '.join(DTYPES)}")
        self.dtype = DTYPES.get(inp.get("data_type"), np.float32)
        if len(dims) != 3:
            raise unsupported_model(
                name, [*problems, f"expecting input {self.input!r} to have 3 dimensions (CHW or HWC), not {dims}"]
            )
        try:
            self.channels_first = channels_first(dims, inp.get("format", "FORMAT_NONE"))
        except ValueError as exc:
            raise unsupported_model(name, [*problems, f"input {self.input!r}: {exc}"]) from None
        channels, self.height, self.width = (dims[0], dims[1], dims[2]) if self.channels_first else (dims[2], dims[0], dims[1])
        if channels != 3:
            problems.append(f"input {self.input!r} has {channels} channels; the function sends RGB (3)")
        if min(self.height, self.width) < 1:
            problems.append(f"input {self.input!r} has a variable height or width ({dims}): fix them in the config")
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.short_side = _positive_int(params, "resize_short_side", max(self.height, self.width), problems)
        if self.short_side < max(self.height, self.width):
            problems.append(f"resize_short_side {self.short_side} is smaller than the {self.height}x{self.width} crop")
        self.resample = FILTERS.get(params.get("resize_filter", "bicubic")) or Image.Resampling.BICUBIC
        if params.get("resize_filter", "bicubic") not in FILTERS:
            problems.append(f"resize_filter {params['resize_filter']!r} is not one of {', '.join(FILTERS)}")
        # Only float inputs are normalised here; uint8 models normalise inside the graph.
        self.mean = _triple(params, "mean", 0.0, problems)
        self.std = _triple(params, "std", 1.0, problems)
        if not self.std.all():
            problems.append("std has a zero")
        if problems:
            raise unsupported_model(name, problems)

    def tensor(self, img: Image.Image) -> np.ndarray:
        """RGB image -> one batch item, shaped and typed as the model's input."""
        img = resize_center_crop(img, (self.width, self.height), self.short_side, self.resample)
        arr = np.asarray(img, dtype=np.uint8)
        if self.dtype == np.float32:
            arr = (arr.astype(np.float32) / 255.0 - self.mean) / self.std
        return arr.transpose(2, 0, 1) if self.channels_first else arr


def unsupported_model(model: str, problems: list[str]) -> FunctionError:
    return FunctionError(500, "unsupported_model", f"model {model!r} does not fit this function: {'; '.join(problems)}")


def _positive_int(params: dict, key: str, default: int, problems: list[str]) -> int:
    try:
        value = int(params[key]) if key in params else default
    except ValueError:
        problems.append(f"{key} {params[key]!r} is not an integer")
        return default
    if value < 1:
        problems.append(f"{key} {value} must be at least 1")
    return value


def _triple(params: dict, key: str, default: float, problems: list[str]) -> np.ndarray:
    """A per-channel R,G,B parameter (mean, std)."""
    try:
        value = np.array([float(x) for x in params.get(key, f"{default},{default},{default}").split(",")], np.float32)
    except ValueError:
        value = np.zeros(0, np.float32)
    if value.shape != (3,):
        problems.append(f"{key} {params[key]!r} is not three numbers R,G,B")
        return np.full(3, default, np.float32)
    return value
