"""object-classify against a real S3-compatible server (moto, started by sai.local.s3_server) and a
real Triton with the real image model.

Most cases call the handler in-process (the python3-http-debian contract: `handle(event,
context)`), packaged exactly as faas-cli would (handler folder + `common` copied in), so each case
costs one classification, not a process start. The gateway path (`sai s3 upload`'s MinIO-style
notification through the platform) is covered at the end.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import sys
import threading
from pathlib import Path

import pytest
import requests
from helpers import Receiver, encode, packaged_function
from helpers import call_handler as call

from common.result_keys import result_key
from sai.local import s3_server
from sai.local.s3_events import minio_event
from sai.state import free_port


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    handle = s3_server.start_s3(tmp_path_factory.mktemp("s3"), free_port())
    yield handle
    s3_server.stop_s3(handle)


@pytest.fixture(scope="module")
def client(s3):
    return s3.client()


@pytest.fixture(scope="module")
def triton_url(request):
    """Triton of the test platform (or SAI_TEST_TRITON_URL, to iterate against a running one)."""
    import os

    return os.environ.get("SAI_TEST_TRITON_URL") or request.getfixturevalue("platform").triton_url


@pytest.fixture(scope="module")
def fn(tmp_path_factory):
    """The function packaged like faas-cli builds it: handler folder as a package, ./common copied
    in. A unique package name keeps it apart from other functions imported by other tests."""
    target = tmp_path_factory.mktemp("fn")
    try:
        yield packaged_function("object-classify", target)
    finally:
        sys.path.remove(str(target))


@pytest.fixture
def env(monkeypatch, s3, triton_url, tmp_path):
    for k, v in s3_server.function_env(s3).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TRITON_URL", triton_url)
    monkeypatch.setenv("MODEL_NAME", "image_classifier")
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "no-secrets"))
    monkeypatch.setenv("TRITON_RETRIES", "1")
    return monkeypatch


def aws_record(bucket, key, size, etag, name="ObjectCreated:Put"):
    from urllib.parse import quote_plus

    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-01-01T00:00:00.000Z",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag},
        },
    }


def put(client, s3, key, data) -> dict:
    etag = client.put_object(Bucket=s3.bucket, Key=key, Body=data)["ETag"].strip('"')
    return aws_record(s3.bucket, key, len(data), etag)


def result(client, s3, key) -> dict:
    return json.loads(client.get_object(Bucket=s3.bucket, Key=result_key(s3.bucket, key))["Body"].read())


def all_keys(client, s3) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=s3.bucket).get("Contents", [])}


# ---------------------------------------------------------------- the happy path, both formats


def test_the_cluster_e2e_suite_looks_where_the_function_writes(fn, env, client, s3, cat_jpeg):
    """tests/e2e uploads to the chart's MinIO and waits for the result object: it must wait for the
    key object-classify writes with the settings stack.yml deploys it with (it once polled
    results/<key>.json while the function wrote results/<bucket>/<key>.json, and never passed)."""
    from e2e.test_e2e_cluster import STACK, upload_result

    from sai.local.stack import load_stack

    deployed = load_stack(STACK).functions["object-classify"].environment
    for name in ("SOURCE_BUCKETS", "RESULTS_BUCKET", "RESULTS_PREFIX", "INPUT_PREFIX"):
        env.setenv(name, deployed[name])
    key = "incoming/e2e-0123abcd.jpg"
    source, results_bucket, expected = upload_result(key)
    assert source == s3.bucket, "the local store's bucket is the chart's uploads bucket"
    etag = client.put_object(Bucket=source, Key=key, Body=cat_jpeg)["ETag"]
    status, body, _ = call(fn, minio_event(source, key, len(cat_jpeg), etag))
    assert status == 200 and body["records"][0]["status"] == "classified", body
    assert body["records"][0]["result"] == {"bucket": results_bucket, "key": expected}
    stored = json.loads(client.get_object(Bucket=results_bucket, Key=expected)["Body"].read())
    assert stored["source"]["key"] == key


def test_minio_event_classifies_coffee_as_espresso(fn, env, client, s3, coffee_jpeg):
    key = "photos/2026/coffee cup é.jpg"  # spaces and non-ASCII arrive URL-encoded
    etag = client.put_object(Bucket=s3.bucket, Key=key, Body=coffee_jpeg)["ETag"]
    status, body, _ = call(fn, minio_event(s3.bucket, key, len(coffee_jpeg), etag))
    assert status == 200, body
    rec = body["records"][0]
    assert rec["status"] == "classified", rec
    assert rec["key"] == key and rec["result"] == {"bucket": s3.bucket, "key": f"results/{s3.bucket}/{key}.json"}
    assert rec["top1"]["label"] == "espresso"
    stored = result(client, s3, key)
    assert stored["predictions"][0]["label"] == "espresso" and stored["predictions"][0]["score"] > 0.5
    assert len(stored["predictions"]) == 5
    assert stored["source"] == {
        "bucket": s3.bucket,
        "key": key,
        "etag": etag.strip('"'),
        "size": len(coffee_jpeg),
        "event_name": "ObjectCreated:Put",
        "event_time": stored["source"]["event_time"],
    }
    assert stored["model"] == "image_classifier" and stored["model_version"] == "1"
    assert stored["classified_at"].endswith("+00:00")
    head = client.head_object(Bucket=s3.bucket, Key=result_key(s3.bucket, key))
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"sai-result": "1", "source-etag": etag.strip('"'), "model-version": "1"}


def test_batch_with_broken_records_keeps_the_good_ones(fn, env, client, s3, coffee_jpeg):
    from skimage import data

    good = put(client, s3, "batch/coffee.jpg", coffee_jpeg)
    cat = put(client, s3, "batch/cat.jpg", encode(data.chelsea(), quality=92))
    text = put(client, s3, "batch/notes.jpg", b"this is not an image at all")
    truncated = put(client, s3, "batch/truncated.jpg", coffee_jpeg[: len(coffee_jpeg) // 3])
    missing = aws_record(s3.bucket, "batch/never-uploaded.jpg", 10, "0123")
    no_bucket = aws_record("no-such-bucket", "x.jpg", 10, "0123")
    deleted = aws_record(s3.bucket, "batch/coffee.jpg", 10, "0123", name="ObjectRemoved:Delete")
    garbage = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {}}}
    records = [good, text, missing, truncated, cat, no_bucket, deleted, garbage, "nope"]
    status, body, _ = call(fn, {"Records": records})
    assert status == 200, body
    got = [(r["status"], r.get("error", {}).get("code")) for r in body["records"]]
    assert got[0] == ("classified", None)
    assert got[1][0] == "error" and got[1][1] not in ("internal", "internal_error")
    assert got[2] == ("error", "not_found")
    assert got[3][0] == "error" and got[3][1] not in ("internal", "internal_error")
    assert got[4] == ("classified", None)
    assert got[5] == ("error", "bucket_not_allowed")  # not in SOURCE_BUCKETS: never read
    assert got[6] == ("skipped", None)
    assert got[7] == ("error", "bad_record")
    assert got[8] == ("error", "bad_record")
    assert [r["index"] for r in body["records"]] == list(range(len(records)))
    assert body["counts"] == {"classified": 2, "error": 6, "skipped": 1}
    assert result(client, s3, "batch/cat.jpg")["predictions"][0]["label"] in {"tiger cat", "Egyptian cat", "tabby"}
    keys = all_keys(client, s3)
    assert result_key(s3.bucket, "batch/notes.jpg") not in keys
    assert result_key(s3.bucket, "batch/truncated.jpg") not in keys


def test_replayed_event_does_no_work_and_new_version_does(fn, env, client, s3, coffee_jpeg):
    rec = put(client, s3, "replay/a.jpg", coffee_jpeg)
    assert call(fn, {"Records": [rec]})[1]["records"][0]["status"] == "classified"
    first = result(client, s3, "replay/a.jpg")
    status, body, _ = call(fn, {"Records": [rec, rec]})
    assert status == 200
    assert [r["status"] for r in body["records"]] == ["duplicate", "duplicate"]
    assert result(client, s3, "replay/a.jpg")["classified_at"] == first["classified_at"]  # not rewritten
    # The same key with new content has a new eTag: classified again.
    from skimage import data

    rec2 = put(client, s3, "replay/a.jpg", encode(data.chelsea(), quality=92))
    assert call(fn, {"Records": [rec2]})[1]["records"][0]["status"] == "classified"
    assert result(client, s3, "replay/a.jpg")["source"]["etag"] == rec2["s3"]["object"]["eTag"]
    # The stale event for the old version is no longer current: nothing is done for it.
    assert call(fn, {"Records": [rec]})[1]["records"][0]["status"] == "skipped"
    assert result(client, s3, "replay/a.jpg")["source"]["etag"] == rec2["s3"]["object"]["eTag"]


def test_results_never_retrigger(fn, env, client, s3, coffee_jpeg):
    rec = put(client, s3, "loop/a.jpg", coffee_jpeg)
    call(fn, {"Records": [rec]})
    before = all_keys(client, s3)
    # The event a bucket notification would send for our own result object.
    result = result_key(s3.bucket, "loop/a.jpg")
    head = client.head_object(Bucket=s3.bucket, Key=result)
    res_rec = aws_record(s3.bucket, result, head["ContentLength"], head["ETag"].strip('"'))
    _, body, _ = call(fn, {"Records": [res_rec]})
    assert body["records"][0]["status"] == "skipped" and body["records"][0]["reason"] == "result object"
    # Explicit guard, independent of the prefix: a result copied elsewhere is still recognised.
    client.copy_object(Bucket=s3.bucket, Key="elsewhere/a.json", CopySource={"Bucket": s3.bucket, "Key": result})
    head = client.head_object(Bucket=s3.bucket, Key="elsewhere/a.json")
    _, body, _ = call(
        fn, {"Records": [aws_record(s3.bucket, "elsewhere/a.json", head["ContentLength"], head["ETag"].strip('"'))]}
    )
    assert body["records"][0]["status"] == "skipped" and body["records"][0]["reason"] == "result object"
    assert all_keys(client, s3) == before | {"elsewhere/a.json"}


# ---------------------------------------------------------------- hostile and bad input


@pytest.mark.parametrize(
    "key",
    [
        "../escape.jpg",
        "a/../../b.jpg",
        "a/./b.jpg",
        "/abs/path.jpg",
        "a\\..\\b.jpg",
        "evil\u202egpj.exe",
        "nul\x00.jpg",
        "bell\x07.jpg",
    ],
)
def test_unsafe_keys_are_refused_and_nothing_is_written(fn, env, client, s3, key):
    before = all_keys(client, s3)
    status, body, _ = call(fn, {"Records": [aws_record(s3.bucket, key, 100, "abc")]})
    assert status == 200
    assert body["records"][0]["status"] == "error"
    assert body["records"][0]["error"]["code"] == "unsafe_key"
    assert all_keys(client, s3) == before


def test_dotdot_key_really_in_the_bucket_is_refused(fn, env, client, s3, coffee_jpeg):
    """The object exists under a `../` key (S3 allows it); its result would land outside the
    results prefix (`results/../x` is `x` on path-normalising stores): refused."""
    rec = put(client, s3, "../coffee.jpg", coffee_jpeg)
    before = all_keys(client, s3)
    _, body, _ = call(fn, {"Records": [rec]})
    assert body["records"][0]["error"]["code"] == "unsafe_key"
    assert all_keys(client, s3) == before
    # raw (not URL-encoded) and percent-encoded spellings alike
    rec["s3"]["object"]["key"] = "%2E%2E%2Fcoffee.jpg"
    assert call(fn, {"Records": [rec]})[1]["records"][0]["error"]["code"] == "unsafe_key"


def test_invalid_utf8_key_is_refused(fn, env, s3):
    rec = aws_record(s3.bucket, "x", 1, "e")
    rec["s3"]["object"]["key"] = "bad%FF%FEkey.jpg"
    assert call(fn, {"Records": [rec]})[1]["records"][0]["error"]["code"] == "unsafe_key"


def test_too_large_object(fn, env, client, s3, coffee_jpeg):
    env.setenv("MAX_OBJECT_BYTES", str(len(coffee_jpeg) - 1))
    rec = put(client, s3, "big/coffee.jpg", coffee_jpeg)
    body = call(fn, {"Records": [rec]})[1]
    assert body["records"][0]["error"]["code"] == "too_large"
    # the event's size may lie: the size of what is actually fetched is checked too
    rec["s3"]["object"]["size"] = 10
    body = call(fn, {"Records": [rec]})[1]
    assert body["records"][0]["error"]["code"] == "too_large"
    assert result_key(s3.bucket, "big/coffee.jpg") not in all_keys(client, s3)


@pytest.mark.parametrize(
    "payload, code",
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_encoding"),
        ([1, 2], "bad_event"),
        ({"Records": "x"}, "bad_event"),
        ({"foo": 1}, "bad_event"),
        ({"Records": [{}] * 101}, "too_many_records"),
        ({"url": "https://example.com/cat.jpg"}, "bad_event"),  # only objects of the bucket, never any URL
        ({"url": "s3://uploads"}, "bad_event"),
        ({"url": "s3://uploads/a/../b.jpg"}, "bad_event"),
    ],
)
def test_malformed_events_are_400(fn, env, payload, code):
    status, body, _ = call(fn, payload)
    assert status == 400
    assert body["error"]["code"] == code


def test_s3_test_event_and_wrong_method(fn, env):
    status, body, _ = call(fn, {"Event": "s3:TestEvent", "Bucket": "uploads"})
    assert status == 200 and body["records"] == [] and body["counts"] == {}
    assert call(fn, {"Records": []}, method="GET")[0] == 405


def test_dead_s3_endpoint_is_a_retryable_record_error(fn, env, s3, coffee_jpeg):
    env.setenv("S3_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    status, body, headers = call(fn, {"Records": [aws_record(s3.bucket, "a.jpg", 10, "e"), "bad"]})
    assert status == 503 and headers["Retry-After"]
    assert body["records"][0]["error"]["code"] == "s3_unavailable"
    assert body["records"][1]["error"]["code"] == "bad_record"


def test_credentials_from_openfaas_secret_files(fn, env, client, s3, coffee_jpeg, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "s3-access-key-id").write_text(f"{s3.access_key}\n")
    (secrets / "s3-secret-access-key").write_text("secret-from-file\n")
    env.setenv("SECRETS_DIR", str(secrets))
    env.delenv("S3_ACCESS_KEY_ID")
    env.delenv("S3_SECRET_ACCESS_KEY")
    cfg = fn.Settings()
    assert (cfg.access_key, cfg.secret_key) == (s3.access_key, "secret-from-file")
    rec = put(client, s3, "secrets/coffee.jpg", coffee_jpeg)
    # the local S3 takes only its generated credentials (docs/reliability.md, 14): a wrong secret is refused
    assert call(fn, {"Records": [rec]})[1]["records"][0]["error"]["code"] == "access_denied"
    (secrets / "s3-secret-access-key").write_text(f"{s3.secret_key}\n")
    assert call(fn, {"Records": [rec]})[1]["records"][0]["status"] == "classified"


# ---------------------------------------------------------------- forged and concurrent events


def test_event_for_a_bucket_not_in_source_buckets_is_refused(fn, env, client, s3, coffee_jpeg):
    """A forged event cannot point the function's credentials at another bucket."""
    client.create_bucket(Bucket="private")
    etag = client.put_object(Bucket="private", Key="incoming/secret.jpg", Body=coffee_jpeg)["ETag"].strip('"')
    before = all_keys(client, s3)
    status, body, _ = call(fn, {"Records": [aws_record("private", "incoming/secret.jpg", len(coffee_jpeg), etag)]})
    assert status == 200  # final: redelivering would not help
    assert body["records"][0]["error"]["code"] == "bucket_not_allowed"
    assert all_keys(client, s3) == before
    assert {o["Key"] for o in client.list_objects_v2(Bucket="private")["Contents"]} == {"incoming/secret.jpg"}
    env.setenv("SOURCE_BUCKETS", "")  # unset: no bucket at all
    assert call(fn, {"Records": [put(client, s3, "x/coffee.jpg", coffee_jpeg)]})[1]["records"][0]["error"]["code"] == (
        "bucket_not_allowed"
    )


def test_same_key_in_two_buckets_gets_two_results(fn, env, client, s3, coffee_jpeg, cat_jpeg):
    """Results are keyed by bucket and key: bucket B's upload never overwrites bucket A's result."""
    client.create_bucket(Bucket="second")
    client.create_bucket(Bucket="shared-results")
    env.setenv("SOURCE_BUCKETS", f"{s3.bucket},second")
    env.setenv("RESULTS_BUCKET", "shared-results")
    coffee = put(client, s3, "same/photo.jpg", coffee_jpeg)
    etag = client.put_object(Bucket="second", Key="same/photo.jpg", Body=cat_jpeg)["ETag"].strip('"')
    cat = aws_record("second", "same/photo.jpg", len(cat_jpeg), etag)
    body = call(fn, {"Records": [coffee, cat]})[1]
    assert [r["status"] for r in body["records"]] == ["classified", "classified"]
    labels = {}
    for bucket in (s3.bucket, "second"):
        obj = client.get_object(Bucket="shared-results", Key=f"results/{bucket}/same/photo.jpg.json")
        labels[bucket] = json.loads(obj["Body"].read())["predictions"][0]["label"]
    assert labels[s3.bucket] == "espresso" and "cat" in labels["second"]


def test_concurrent_identical_events_classify_once(fn, env, client, s3, coffee_jpeg):
    """Four deliveries of one event at the same moment: one classifies, the others find it done
    or claimed (503, so a notifier retries and then sees the result). One result write."""
    client.create_bucket(Bucket="versioned-results")
    client.put_bucket_versioning(Bucket="versioned-results", VersioningConfiguration={"Status": "Enabled"})
    env.setenv("RESULTS_BUCKET", "versioned-results")
    rec = put(client, s3, "burst/coffee.jpg", coffee_jpeg)
    start = threading.Barrier(4)

    def deliver(_):
        start.wait()
        return call(fn, {"Records": [rec]})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(deliver, range(4)))
    statuses = sorted(body["records"][0]["status"] for _, body, _ in answers)
    assert statuses.count("classified") == 1, answers
    for status, body, _ in answers:
        record = body["records"][0]
        if record["status"] == "error":
            assert record["error"]["code"] == "in_progress" and status == 503
        else:
            assert record["status"] in ("classified", "duplicate") and status == 200
    key = f"results/{s3.bucket}/burst/coffee.jpg.json"
    listing = client.list_object_versions(Bucket="versioned-results", Prefix=key)
    assert [v["Key"] for v in listing["Versions"] if v["Key"] == key] == [key]  # written once
    # Redelivered later (as the notifier does after a 503): done, no new write.
    assert call(fn, {"Records": [rec]})[1]["records"][0]["status"] == "duplicate"
    # No claim is left behind.
    assert not client.list_objects_v2(Bucket="versioned-results", Prefix=key + ".claim").get("Contents")


def test_separate_results_bucket(fn, env, client, s3, coffee_jpeg):
    client.create_bucket(Bucket="results-bucket")
    env.setenv("RESULTS_BUCKET", "results-bucket")
    env.setenv("RESULTS_PREFIX", "")
    rec = put(client, s3, "sep/coffee.jpg", coffee_jpeg)
    body = call(fn, {"Records": [rec]})[1]
    assert body["records"][0]["result"] == {"bucket": "results-bucket", "key": f"{s3.bucket}/sep/coffee.jpg.json"}
    obj = client.get_object(Bucket="results-bucket", Key=f"{s3.bucket}/sep/coffee.jpg.json")
    assert json.loads(obj["Body"].read())["predictions"][0]["label"] == "espresso"


# ---------------------------------------------------------------- through the gateway


@pytest.fixture(scope="module")
def platform_s3(request):
    platform = request.getfixturevalue("platform")
    handle = getattr(platform, "s3", None)
    if handle is None:
        pytest.skip("the platform fixture runs no S3 server (needs platform.s3)")
    return platform, handle


def test_sai_s3_upload_through_the_gateway(platform_s3, tmp_path, coffee_jpeg, capsys):
    platform, handle = platform_s3
    from sai.cli import main

    state = Path(handle.log_path).parent
    img = tmp_path / "coffee.jpg"
    img.write_bytes(coffee_jpeg)
    assert (
        main(
            [
                "s3",
                "upload",
                str(img),
                "--key",
                "incoming/e2e/coffee.jpg",
                "--state-dir",
                str(state),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "object-classify is notified" in out
    assert json.loads(out[out.index("{") :])["predictions"][0]["label"] == "espresso"
    assert main(["s3", "result", "incoming/e2e/coffee.jpg", "--state-dir", str(state)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["predictions"][0]["label"] == "espresso"
    # replay through the gateway: no new work
    r = requests.post(
        f"{platform.gateway_url}/function/object-classify",
        json=minio_event(handle.bucket, "incoming/e2e/coffee.jpg", len(coffee_jpeg), shown["source"]["etag"]),
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["records"][0]["status"] == "duplicate"
    assert main(["s3", "result", "incoming/e2e/never.jpg", "--state-dir", str(state)]) == 1


def test_async_notification_through_the_gateway(platform_s3, coffee_jpeg):
    """Callers that want a callback can send an event to /async-function/object-classify: the
    per-record status comes back on it. (MinIO itself uses the synchronous route, so that a 503
    keeps the event queued: CE's queue-worker never retries.)"""
    platform, handle = platform_s3
    receiver = Receiver()
    try:
        client = handle.client()
        etag = client.put_object(Bucket=handle.bucket, Key="incoming/e2e/async.jpg", Body=coffee_jpeg)["ETag"]
        r = requests.post(
            f"{platform.gateway_url}/async-function/object-classify",
            json=minio_event(handle.bucket, "incoming/e2e/async.jpg", len(coffee_jpeg), etag),
            headers={"X-Callback-Url": receiver.url},
            timeout=10,
        )
        assert r.status_code == 202, r.text
        call_id = r.headers["X-Call-Id"]
        got = receiver.wait_for([call_id], timeout=30)[call_id][0]
        assert got["headers"]["X-Function-Status"] == "200"
        assert json.loads(got["body"])["records"][0]["status"] == "classified"
    finally:
        receiver.server.shutdown()


def test_sai_s3_commands_without_a_server(tmp_path, capsys):
    from sai.cli import main

    img = tmp_path / "x.jpg"
    img.write_bytes(b"x")
    assert main(["s3", "upload", str(img), "--state-dir", str(tmp_path)]) == 3
    assert main(["s3", "result", "x.jpg", "--state-dir", str(tmp_path)]) == 3
    assert "sai up --with-s3" in capsys.readouterr().err


def test_prefix_and_suffix_filters(fn, env, client, s3):
    env.setenv("INPUT_PREFIX", "incoming/")
    env.setenv("INPUT_SUFFIXES", ".jpg, .PNG")
    before = all_keys(client, s3)
    recs = [
        aws_record(s3.bucket, "other/a.jpg", 10, "e"),
        aws_record(s3.bucket, "incoming/a.txt", 10, "e"),
        aws_record(s3.bucket, "incoming/a.json", 10, "e"),
    ]
    body = call(fn, {"Records": recs})[1]
    assert [r["status"] for r in body["records"]] == ["skipped"] * 3
    assert "INPUT_PREFIX" in body["records"][0]["reason"] and "INPUT_SUFFIXES" in body["records"][1]["reason"]
    # a matching key goes on to S3 (here: missing, so not_found) - the filters let it through
    body = call(fn, {"Records": [aws_record(s3.bucket, "incoming/A.png", 10, "e")]})[1]
    assert body["records"][0]["error"]["code"] == "not_found"
    assert all_keys(client, s3) == before


def test_refused_keys_are_logged_with_the_key(platform_s3):
    """Records refused for their key were answered 2xx with nothing logged. Each
    refusal is now one line in the function's log, with the key as sent (repr: a tab stays \\t and
    a newline cannot forge another line), and an over-long key cut with its length."""
    platform, handle = platform_s3
    keys = ["incoming/../../escape.jpg", "incoming/tab\there.jpg", "incoming/new\nline.jpg", "incoming/" + "k" * 1100]
    event = {"Records": [minio_event(handle.bucket, key, 10, "etag")["Records"][0] for key in keys]}
    r = requests.post(f"{platform.gateway_url}/function/object-classify", json=event, timeout=30)
    assert r.status_code == 200 and [rec["error"]["code"] for rec in r.json()["records"]] == ["unsafe_key"] * 4
    call_id = r.headers["X-Call-Id"]
    log = platform.logs / "function-object-classify.log"
    lines = [line for line in log.read_text().splitlines() if call_id in line and "not processed" in line]
    assert len(lines) == 4, lines
    for index, (key, line) in enumerate(zip(keys, lines, strict=True)):
        assert f"record {index} not processed (unsafe_key)" in line and " WARNING " in line
        assert repr(key)[:100] in line
    assert "(1109 characters)" in lines[3]


# ---------------------------------------------------------------- triggers: a named object, the nightly sweep


def test_a_message_naming_an_object_classifies_it(fn, env, client, s3, coffee_jpeg):
    """The `images` topic's message (docs/triggers.md); INPUT_PREFIX scopes notifications only."""
    env.setenv("INPUT_PREFIX", "incoming/")
    client.put_object(Bucket=s3.bucket, Key="photos/coffee.jpg", Body=coffee_jpeg)
    status, body, _ = call(fn, {"url": f"s3://{s3.bucket}/photos/coffee.jpg"})
    assert status == 200 and body["records"][0]["status"] == "classified"
    assert result(client, s3, "photos/coffee.jpg")["predictions"][0]["label"] == "espresso"
    body = call(fn, {"url": "s3://elsewhere/photos/coffee.jpg"})[1]
    assert body["records"][0]["error"]["code"] == "bucket_not_allowed"


def test_the_scheduled_sweep_reclassifies_what_lacks_a_current_result(fn, env, client, s3, coffee_jpeg, cat_jpeg):
    """cron-connector POSTs no body: every object under INPUT_PREFIX without a result from the
    model version Triton serves now is classified; current results are left alone."""
    env.setenv("INPUT_PREFIX", "nightly/")
    current = put(client, s3, "nightly/current.jpg", coffee_jpeg)
    old_model = put(client, s3, "nightly/old-model.jpg", cat_jpeg)
    assert [r["status"] for r in call(fn, {"Records": [current, old_model]})[1]["records"]] == ["classified"] * 2
    client.put_object(Bucket=s3.bucket, Key="nightly/never-notified.jpg", Body=coffee_jpeg)
    stale = result_key(s3.bucket, "nightly/old-model.jpg")
    head = client.head_object(Bucket=s3.bucket, Key=stale)
    client.copy_object(  # as if written by an earlier model version
        Bucket=s3.bucket,
        Key=stale,
        CopySource={"Bucket": s3.bucket, "Key": stale},
        Metadata={**head["Metadata"], "model-version": "0"},
        MetadataDirective="REPLACE",
    )
    status, body, _ = call(fn, b"", method="POST")
    assert status == 200
    assert {r["key"]: r["status"] for r in body["records"]} == {
        "nightly/current.jpg": "duplicate",
        "nightly/never-notified.jpg": "classified",
        "nightly/old-model.jpg": "classified",
    }
    assert client.head_object(Bucket=s3.bucket, Key=stale)["Metadata"]["model-version"] == "1"


# ---------------------------------------------------------------- the chart's MinIO user

# The action, resource and condition keys S3 authorises each operation object-classify uses by
# (AWS Service Authorization Reference, "Actions defined by Amazon S3"): HeadObject needs
# s3:GetObject, ListObjectsV2 s3:ListBucket on the bucket with the request's prefix as s3:prefix.
# MinIO checks the same (cmd/object-handlers.go headObjectHandler: GetObjectAction;
# cmd/bucket-listobjects-handlers.go listObjectsV2Handler: ListBucketAction).
S3_ACTIONS = {
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "DeleteObject": "s3:DeleteObject",
    "ListObjectsV2": "s3:ListBucket",
}


def authorised_as(operation: str, params: dict) -> tuple[str, str, dict]:
    """(action, resource ARN, condition context) of one S3 call."""
    if operation == "ListObjectsV2":
        return S3_ACTIONS[operation], f"arn:aws:s3:::{params['Bucket']}", {"s3:prefix": params.get("Prefix", "")}
    return S3_ACTIONS[operation], f"arn:aws:s3:::{params['Bucket']}/{params['Key']}", {}


def wildcard(pattern: str, value: str) -> bool:
    """IAM's string match: `*` any run of characters, `?` one."""
    regex = ".*".join(".".join(re.escape(p) for p in part.split("?")) for part in pattern.split("*"))
    return re.fullmatch(regex, value, re.DOTALL) is not None


def as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def allows(policy: dict, action: str, resource: str, context: dict) -> bool:
    """An Allow-only policy (which this evaluator checks it is) allows the call when one statement
    matches its action, resource and every condition; a condition key the request lacks fails."""
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow" and set(st) <= {"Effect", "Action", "Resource", "Condition"}, st
        if not any(wildcard(a, action) for a in as_list(st["Action"])):
            continue
        if not any(wildcard(r, resource) for r in as_list(st["Resource"])):
            continue
        ok = True
        for operator, keys in (st.get("Condition") or {}).items():
            assert operator in ("StringLike", "StringEquals"), operator
            for key, wanted in keys.items():
                have = context.get(key)
                same = wildcard if operator == "StringLike" else str.__eq__
                ok = ok and have is not None and any(same(w, have) for w in as_list(wanted))
        if ok:
            return True
    return False


def chart_functions_policy() -> dict:
    """The policy the kind profile's MinIO set-up Job gives object-classify's user."""
    from sai.k8s.helm_kubectl import CHART_DIR, render_chart

    job = next(
        o for o in render_chart([CHART_DIR / "values-kind.yaml"]) if o["kind"] == "Job" and "minio" in o["metadata"]["name"]
    )
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    return json.loads(script.split("cat > /tmp/functions-policy.json <<EOF\n", 1)[1].split("\nEOF", 1)[0])


def test_the_chart_minio_user_may_make_every_call_the_function_makes(fn, env, client, s3, coffee_jpeg, cat_jpeg):
    """Every S3 call of an event, a replay, a claim taken over and the nightly sweep, made with the
    settings stack.yml deploys, is allowed by the policy the chart gives the function's MinIO user
    (the sweep's listing once answered AccessDenied there: no s3:ListBucket)."""
    from e2e.test_e2e_cluster import STACK

    from sai.local.stack import load_stack

    deployed = load_stack(STACK).functions["object-classify"].environment
    for name in ("SOURCE_BUCKETS", "RESULTS_BUCKET", "RESULTS_PREFIX", "INPUT_PREFIX"):
        env.setenv(name, deployed[name])
    calls: list[tuple[str, dict]] = []

    def record(params, model, **_):
        calls.append((model.name, dict(params)))

    function_client = fn.s3_client(fn.Settings())  # the client the handler uses (one per configuration)
    function_client.meta.events.register("before-parameter-build.s3", record)
    try:
        new = "incoming/policy-new.jpg"
        etag = client.put_object(Bucket=s3.bucket, Key=new, Body=coffee_jpeg)["ETag"]
        event = minio_event(s3.bucket, new, len(coffee_jpeg), etag)
        assert call(fn, event)[1]["records"][0]["status"] == "classified"
        assert call(fn, event)[1]["records"][0]["status"] == "duplicate"
        stale = "incoming/policy-stale-claim.jpg"  # a claim its worker left: taken over (If-Match)
        etag = client.put_object(Bucket=s3.bucket, Key=stale, Body=cat_jpeg)["ETag"]
        claim = result_key(s3.bucket, stale, deployed["RESULTS_PREFIX"]) + ".claim"
        client.put_object(Bucket=deployed["RESULTS_BUCKET"], Key=claim, Body=json.dumps({"source_etag": "old", "at": 0}))
        assert call(fn, minio_event(s3.bucket, stale, len(cat_jpeg), etag))[1]["records"][0]["status"] == "classified"
        status, body, _ = call(fn, b"", method="POST")  # the nightly sweep
        assert status == 200 and {r["key"] for r in body["records"]} >= {new, stale}
    finally:
        function_client.meta.events.unregister("before-parameter-build.s3", record)

    assert {op for op, _ in calls} == set(S3_ACTIONS), "each kind of call was made"
    assert any(p.get("IfNoneMatch") for op, p in calls if op == "PutObject") and any(
        p.get("IfMatch") for op, p in calls if op == "PutObject"
    ), "both conditional puts of the claim"
    policy = chart_functions_policy()
    refused = sorted({(op, authorised_as(op, p)[1]) for op, p in calls if not allows(policy, *authorised_as(op, p))})
    assert not refused, f"the chart's MinIO user may not: {refused}"
    # The check can fail: the policy before i24d had no s3:ListBucket, and the listing is confined
    # to the prefix the sweep reads.
    listing = next(authorised_as(op, p) for op, p in calls if op == "ListObjectsV2")
    without_list = {"Statement": [st for st in policy["Statement"] if "s3:ListBucket" not in as_list(st["Action"])]}
    assert not allows(without_list, *listing)
    assert not allows(policy, listing[0], listing[1], {"s3:prefix": ""}), "the whole bucket may not be listed"
    assert not allows(policy, "s3:PutObject", f"arn:aws:s3:::{s3.bucket}/{new}", {}), "inputs are read-only"
