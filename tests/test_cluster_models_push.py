"""`sai cluster models push` against a real local S3 server (moto, as `sai up --with-s3` runs it):
what goes up, what stays home, stale objects removed, and the refusal to push unbuilt models."""

from __future__ import annotations

import shutil

import pytest

from sai import paths
from sai.cli import main
from sai.cluster import model_push
from sai.cluster.project import free_port, start_s3, stop_s3

BUCKET = "models"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    state = tmp_path_factory.mktemp("s3")
    handle = start_s3(state, free_port(), bucket=BUCKET)
    yield handle
    stop_s3(handle, state)


@pytest.fixture(autouse=True)
def credentials(monkeypatch, s3):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3.region)
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)


def tiny_repo(root):
    """A built repository in miniature: one ONNX-platform model with labels, one ensemble, and the
    files that must stay home (build reports, adapters, training reports)."""
    clf = root / "tiny_classifier"
    (clf / "configs").mkdir(parents=True)
    (clf / "1").mkdir()
    (clf / "config.pbtxt").write_text(
        'name: "tiny_classifier"\nplatform: "onnxruntime_onnx"\n'
        'output [ { name: "p", data_type: TYPE_FP32, dims: [ 2 ], label_filename: "labels.txt" } ]\n'
    )
    (clf / "configs" / "cpu.pbtxt").write_text('name: "tiny_classifier"\nplatform: "onnxruntime_onnx"\n')
    (clf / "labels.txt").write_text("no\nyes\n")
    (clf / "1" / "model.onnx").write_bytes(b"\x08\x07onnx-bytes" * 100)
    (clf / "1" / "build_report.json").write_text("{}")
    (clf / "adapter.npz").write_bytes(b"adapter")
    ens = root / "tiny_ensemble"
    (ens / "1").mkdir(parents=True)
    (ens / "config.pbtxt").write_text('name: "tiny_ensemble"\nplatform: "ensemble"\n')
    (ens / "1" / ".gitkeep").write_text("")
    (ens / "TRAINING_REPORT.json").write_text("{}")
    return root


def keys(s3, prefix=""):
    out = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in out)


def push(s3, repo, *extra):
    return main(["cluster", "models", "push", "--repo", str(repo), "--endpoint", s3.endpoint, "--bucket", BUCKET, *extra])


def test_push_uploads_exactly_the_built_files(s3, tmp_path, capsys):
    repo = tiny_repo(tmp_path / "repo")
    assert push(s3, repo, "--prefix", "t1") == 0
    assert keys(s3, "t1/") == [
        "t1/tiny_classifier/1/model.onnx",
        "t1/tiny_classifier/config.pbtxt",
        "t1/tiny_classifier/configs/cpu.pbtxt",
        "t1/tiny_classifier/labels.txt",
        "t1/tiny_ensemble/1/.gitkeep",
        "t1/tiny_ensemble/config.pbtxt",
    ]
    body = s3.client().get_object(Bucket=BUCKET, Key="t1/tiny_classifier/1/model.onnx")["Body"].read()
    assert body == (repo / "tiny_classifier" / "1" / "model.onnx").read_bytes()
    assert "storageUri: s3://models/t1" in capsys.readouterr().out


def test_stale_objects_are_deleted_and_dry_run_changes_nothing(s3, tmp_path, capsys):
    repo = tiny_repo(tmp_path / "repo")
    assert push(s3, repo, "--prefix", "t2") == 0
    s3.client().put_object(Bucket=BUCKET, Key="t2/tiny_classifier/2/model.onnx", Body=b"old build")
    s3.client().put_object(Bucket=BUCKET, Key="t2/unrelated/keep.txt", Body=b"not ours")
    before = keys(s3, "t2/")
    capsys.readouterr()
    assert push(s3, repo, "--prefix", "t2", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would delete stale s3://models/t2/tiny_classifier/2/model.onnx" in out and "would push 6 files" in out
    assert keys(s3, "t2/") == before
    assert push(s3, repo, "--prefix", "t2") == 0
    after = keys(s3, "t2/")
    assert "t2/tiny_classifier/2/model.onnx" not in after
    assert "t2/unrelated/keep.txt" in after  # only the pushed models' prefixes are cleaned


def test_refuses_unbuilt_models(s3, tmp_path, capsys):
    """The checkout's model_repository/ without its built files (as in a fresh clone)."""
    repo = tmp_path / "fresh"
    shutil.copytree(paths.model_repository(), repo, ignore=shutil.ignore_patterns("*.onnx", "build_report.json", "labels.txt"))
    assert push(s3, repo, "--prefix", "t3") == 1
    err = capsys.readouterr().err
    assert "refusing to push models that are not built" in err
    assert "image_classifier: not built or out of date" in err
    assert "text_encoder/1: no model file" in err or "text_encoder: no version folder" in err
    assert keys(s3, "t3/") == []


def test_refuses_a_missing_label_file(s3, tmp_path, capsys):
    repo = tiny_repo(tmp_path / "repo")
    (repo / "tiny_classifier" / "labels.txt").unlink()
    assert push(s3, repo, "--prefix", "t4") == 1
    assert "tiny_classifier: labels.txt missing" in capsys.readouterr().err


def test_builders_decide_for_the_models_they_know(tmp_path):
    """Real model names with placeholder files pass the structure check but not `sai models build`'s."""
    repo = tmp_path / "fake"
    shutil.copytree(paths.model_repository(), repo, ignore=shutil.ignore_patterns("*.onnx", "build_report.json"))
    for m in ("image_classifier", "text_encoder", "sentiment_head", "entity_head"):
        (repo / m / "1").mkdir(exist_ok=True)
        (repo / m / "1" / "model.onnx").write_bytes(b"placeholder")
    (repo / "image_classifier" / "labels.txt").write_text("cat\n")
    assert model_push.problems(repo, check_builders=False) == []
    assert any("text_encoder: not built" in p for p in model_push.problems(repo))


def test_no_default_bucket(s3, tmp_path, capsys):
    """The chart names no bucket (AWS bucket names are global: a default is somebody else's), so
    a push without your values file stops before S3 is contacted and names the value to set."""
    assert model_push.chart_uri("gpu") == "" and model_push.chart_uri("knative") == ""
    assert model_push.chart_uri("kind") is None  # the kind profile mounts model_repository/ (pvc)
    assert model_push.split_uri("s3://models/serverless-ai/") == ("models", "serverless-ai")
    assert main(["cluster", "models", "push", "--profile", "kind"]) == 2
    assert "reads models from a volume" in capsys.readouterr().err
    repo, before = tiny_repo(tmp_path / "repo"), keys(s3)
    assert main(["cluster", "models", "push", "--repo", str(repo), "--endpoint", s3.endpoint, "--profile", "gpu"]) == 2
    out, err = capsys.readouterr()
    assert "modelRepository.s3.uri is empty" in err and "-f my-values.yaml" in err and "upload" not in out
    assert keys(s3) == before


def test_s3_errors_are_one_line(s3, tmp_path, capsys):
    repo = tiny_repo(tmp_path / "repo")
    assert main(["cluster", "models", "push", "--repo", str(repo), "--endpoint", s3.endpoint, "--bucket", "no-such-bucket"]) == 4
    out, err = capsys.readouterr()
    assert "s3://no-such-bucket/serverless-ai" in err and "HeadBucket" in err and "404" in err
    assert "Traceback" not in err and "upload" not in out  # nothing sent before the bucket was known


def test_bucket_and_prefix_from_your_values_file(s3, tmp_path, capsys):
    """The URI is one value: the -f file given to `sai cluster install` (and k8s/bootstrap.sh
    --values) tells the push where to upload, over the chart's placeholder."""
    mine = tmp_path / "my-values.yaml"
    mine.write_text("modelRepository:\n  s3:\n    uri: s3://models/team-a/serving\n")
    assert model_push.chart_uri("gpu", [mine]) == "s3://models/team-a/serving"
    repo = tiny_repo(tmp_path / "repo")
    argv = ["cluster", "models", "push", "--repo", str(repo), "--endpoint", s3.endpoint, "--profile", "gpu", "-f", str(mine)]
    assert main(argv) == 0
    assert "storageUri: s3://models/team-a/serving" in capsys.readouterr().out
    assert "team-a/serving/tiny_classifier/config.pbtxt" in keys(s3, "team-a/")
    assert main(["cluster", "models", "push", "--profile", "gpu", "-f", str(tmp_path / "nope.yaml")]) == 2
    assert "no such values file" in capsys.readouterr().err
