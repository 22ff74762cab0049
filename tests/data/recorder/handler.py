"""A test function for the trigger tests: records each call (body and the connector's headers) as
one JSON file in RECORD_DIR, answers 503 to the first FAIL_TIMES calls with the same body, and
takes SLOW_S seconds when the body holds "slow"."""

import hashlib
import json
import os
import time
import uuid


def handle(event, context):
    folder = os.environ["RECORD_DIR"]
    body = event.body.decode("utf-8", "replace") if event.body else ""
    digest = hashlib.sha1(body.encode()).hexdigest()[:12]
    seen = len([n for n in os.listdir(folder) if n.startswith(digest)])
    headers = {k: event.headers.get(k) for k in ("X-Topic", "X-Connector", "X-Call-Id", "Content-Type")}
    record = {"body": body, "headers": headers, "at": time.time(), "attempt": seen + 1}
    path = os.path.join(folder, f"{digest}-{uuid.uuid4().hex[:8]}.json")
    with open(path + ".part", "w") as f:  # renamed when complete: tests read *.json while calls run
        json.dump(record, f)
    os.replace(path + ".part", path)
    if seen < int(os.environ.get("FAIL_TIMES", "0")):
        return {"statusCode": 503, "body": json.dumps({"error": {"code": "busy", "message": "try later"}})}
    if "slow" in body:
        time.sleep(float(os.environ.get("SLOW_S", "0")))
    return {
        "statusCode": 200,
        "body": json.dumps({"ok": True, "attempt": seen + 1}),
        "headers": {"Content-Type": "application/json"},
    }
