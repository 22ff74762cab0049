"""Where object-classify writes the result of an uploaded object. One definition for the function
(functions/object-classify), the local platform (`sai s3 result`) and the cluster e2e suite
(tests/e2e), so none of them can look for a result where the function did not put it."""

from __future__ import annotations

RESULTS_PREFIX = "results/"  # object-classify's RESULTS_PREFIX when unset (stack.yml sets the same)


def result_key(bucket: str, key: str, prefix: str = RESULTS_PREFIX) -> str:
    """`<prefix><bucket>/<key>.json`: the source bucket is part of the key, so two source buckets
    writing into one results bucket never share a result."""
    return f"{prefix}{bucket}/{key}.json"
