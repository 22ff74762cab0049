"""image-classify: an image in, top-k ImageNet labels out.

Input (POST), any of:
  - raw image bytes (JPEG, PNG, WebP, GIF, BMP, TIFF) typed image/*, application/octet-stream,
    curl's default application/x-www-form-urlencoded, or untyped
  - multipart/form-data with one file part
  - JSON {"image": "<base64>", "top_k": 5}
Query: ?top_k=N (1..20, default 5).
Output: {"model", "model_version", "predictions": [{"label", "class_id", "score"}], "timings_ms"}.
"""

from .common import request
from .common.classify import MAX_TOP_K, classify_image
from .common.errors import FunctionError, handler_errors, json_response

# Raw image bytes. `curl --data-binary @cat.jpg` labels its body form-urlencoded by default.
RAW_TYPES = ("", "application/octet-stream", "application/x-www-form-urlencoded")


def image_and_options(event) -> tuple[bytes, object]:
    """The image bytes and any top_k given in a JSON body."""
    kind = request.content_type(event)
    if kind.startswith("image/") or kind in RAW_TYPES:
        return request.body(event), None
    if kind == "multipart/form-data":
        return request.multipart_file(event), None
    if kind == "application/json":
        payload = request.json_body(event)
        top_k = payload.get("top_k") if isinstance(payload, dict) else None
        return request.base64_field(payload, "image"), top_k
    raise FunctionError(
        415,
        "unsupported_media_type",
        f"Content-Type {kind!r} is not supported; send image bytes, multipart/form-data or application/json",
    )


@handler_errors
def handle(event, context):
    request.require_method(event, "POST")
    data, json_top_k = image_and_options(event)
    top_k = request.int_param(event, "top_k", 5, 1, MAX_TOP_K, override=json_top_k)
    return json_response(classify_image(data, top_k))
