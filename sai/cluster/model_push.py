"""`sai cluster models push`: upload the built model repository to the chart's model store.

What goes up, per model folder (so that `storageUri` finds exactly what `sai models build` made):
`config.pbtxt`, `configs/*.pbtxt`, the label files the configs name (`label_filename`), and the
version folders (`1/model.onnx`; an ensemble's empty `1/` travels as its `.gitkeep`, since S3 has
no empty folders). Build reports, training reports and adapters stay home. Objects under a pushed
model's prefix that are not in the set are deleted, so a store never mixes two builds.

It refuses to push when a model is not built: every model folder must have its version files, and
the models `sai models build` knows must pass its own up-to-date check (`is_built`).
Credentials and endpoint: boto3's usual sources (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL, a profile), or --endpoint; bucket and prefix default to the chart's
modelRepository.s3.uri for the profile and your values files (-f), as `sai cluster install -f` uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sai.cluster.project import CHART_DIR

SKIP_NAMES = {"build_report.json"}
LABEL_RE = re.compile(r'label_filename\s*:\s*"([^"]+)"')
PLATFORM_RE = re.compile(r'^\s*(platform|backend)\s*:\s*"([^"]+)"', re.M)


class NotBuilt(Exception):
    pass


@dataclass(frozen=True)
class Upload:
    path: Path
    key: str


def chart_uri(profile: str, values: list[str | Path] = (), chart: Path = CHART_DIR) -> str | None:
    """modelRepository.s3.uri as helm would see it (values.yaml, the profile's, then the user's
    values files, later wins); "" when none of them sets it; None if the model repository is not
    on S3."""
    import yaml

    merged: dict = {}
    for f in (chart / "values.yaml", chart / f"values-{profile}.yaml", *map(Path, values)):
        repo = (yaml.safe_load(f.read_text()) or {}).get("modelRepository") or {}
        merged["source"] = repo.get("source", merged.get("source"))
        if (repo.get("s3") or {}).get("uri"):
            merged["uri"] = repo["s3"]["uri"]
    return merged.get("uri", "") if merged.get("source") == "s3" else None


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.strip("/")


def model_dirs(repo: Path) -> list[Path]:
    return sorted(d for d in repo.iterdir() if d.is_dir() and (d / "config.pbtxt").is_file())


def _version_dirs(model: Path) -> list[Path]:
    return sorted(d for d in model.iterdir() if d.is_dir() and d.name.isdigit())


def problems(repo: Path, check_builders: bool = True) -> list[str]:
    """Why the repository is not ready to push; [] when it is."""
    out = []
    models = model_dirs(repo)
    if not models:
        return [f"{repo}: no model folders (with config.pbtxt)"]
    for m in models:
        configs = [m / "config.pbtxt", *sorted((m / "configs").glob("*.pbtxt"))]
        kinds = {k for c in configs for _, k in PLATFORM_RE.findall(c.read_text())}
        versions = _version_dirs(m)
        if not versions:
            out.append(f"{m.name}: no version folder (1/)")
        elif "ensemble" not in kinds:
            for v in versions:
                files = [f for f in v.iterdir() if f.is_file() and f.name not in SKIP_NAMES and not f.name.startswith(".")]
                if not files:
                    out.append(f"{m.name}/{v.name}: no model file (not built: run `sai models build`)")
        for label in sorted({lf for c in configs for lf in LABEL_RE.findall(c.read_text())}):
            if not (m / label).is_file():
                out.append(f"{m.name}: {label} missing (named by label_filename; run `sai models build`)")
    if check_builders:
        from sai.models.build import modules

        for module in modules():
            if (repo / module.MODEL_NAME).is_dir() and not module.is_built(repo):
                out.append(f"{module.MODEL_NAME}: not built or out of date (run `sai models build`)")
    return sorted(set(out))


def plan(repo: Path, prefix: str) -> list[Upload]:
    uploads = []
    for m in model_dirs(repo):
        files = [m / "config.pbtxt", *sorted((m / "configs").glob("*.pbtxt"))]
        labels = {lf for c in files for lf in LABEL_RE.findall(c.read_text())}
        files += [m / lf for lf in sorted(labels)]
        for v in _version_dirs(m):
            files += sorted(f for f in v.rglob("*") if f.is_file() and f.name not in SKIP_NAMES)
        for f in files:
            rel = f.relative_to(repo).as_posix()
            uploads.append(Upload(f, f"{prefix}/{rel}" if prefix else rel))
    return uploads


def push(client, bucket: str, prefix: str, repo: Path, dry_run: bool = False, echo=print) -> dict:
    """Upload plan(repo, prefix) to bucket; delete stale objects under the pushed models' prefixes."""
    uploads = plan(repo, prefix)
    client.head_bucket(Bucket=bucket)  # fails before anything is uploaded when the bucket is wrong
    wanted = {u.key for u in uploads}
    total = 0
    for u in uploads:
        size = u.path.stat().st_size
        total += size
        echo(f"{'would upload' if dry_run else 'upload'} {u.path.relative_to(repo)} -> s3://{bucket}/{u.key} ({size} bytes)")
        if not dry_run:
            client.upload_file(str(u.path), bucket, u.key)
    stale = []
    for m in model_dirs(repo):
        model_prefix = f"{prefix}/{m.name}/" if prefix else f"{m.name}/"
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=model_prefix):
            stale += [o["Key"] for o in page.get("Contents", []) if o["Key"] not in wanted]
    for key in stale:
        echo(f"{'would delete' if dry_run else 'delete'} stale s3://{bucket}/{key}")
        if not dry_run:
            client.delete_object(Bucket=bucket, Key=key)
    return {
        "bucket": bucket,
        "prefix": prefix,
        "uploaded": [u.key for u in uploads],
        "bytes": total,
        "deleted": stale,
        "dry_run": dry_run,
    }


def s3_client(endpoint: str | None = None, region: str | None = None):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        region_name=region or None,
        config=Config(retries={"max_attempts": 3}, s3={"addressing_style": "path"}),
    )
