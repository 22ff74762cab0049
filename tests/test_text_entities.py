"""text-entities end to end: real gateway, real function process, real tritonserver serving the
text_encoder, entity_head and the text_entities ensemble."""

from __future__ import annotations

import json
import subprocess

import pytest
import requests

from common import tokens
from sai.models import entity_training
from sai.paths import model_repository

pytestmark = pytest.mark.skipif(not entity_training.is_built(model_repository()), reason="run `sai models build` first")

MERKEL = "Angela Merkel met Emmanuel Macron in Paris."


@pytest.fixture(scope="module")
def call(gateway):
    def post(payload=None, data=None, content_type=None):
        headers = {"Content-Type": content_type} if content_type else {}
        kwargs = {"json": payload} if payload is not None else {"data": data}
        return requests.post(f"{gateway}/function/text-entities", headers=headers, timeout=120, **kwargs)

    return post


def spans(found) -> list[tuple[str, str, int, int]]:
    return [(e["text"], e["label"], e["start"], e["end"]) for e in found]


def assert_exact(text: str, found) -> None:
    for e in found:
        assert text[e["start"] : e["end"]] == e["text"], e
        assert 0 < e["score"] <= 1


def test_the_readme_curl_example(gateway):
    """`curl -d '{"text": ...}'` (form-encoded Content-Type, as curl sends it) finds both people and
    the place with exact offsets."""
    out = subprocess.run(
        ["curl", "-sS", "-d", json.dumps({"text": MERKEL}), f"{gateway}/function/text-entities"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    body = json.loads(out)
    assert body["model"] == "text_entities" and body["truncated"] is False
    assert spans(body["entities"]) == [
        ("Angela Merkel", "PERSON", 0, 13),
        ("Emmanuel Macron", "PERSON", 18, 33),
        ("Paris", "GPE", 37, 42),
    ]


def test_offsets_are_into_the_original_text_after_normalisation(call):
    """The tokenizer lower-cases, strips accents and sees a decomposed é as e + a mark; the emoji is
    one Python character but four UTF-8 bytes: offsets still index the text as sent. The places
    come with their countries: alone ("flew from São Paulo to Zürich") the teacher itself tags São
    Paulo PERSON and misses Zürich, and the head, which learns from it, tags Zürich PERSON."""
    text = "🎉 Zoë Kravitz moved from São Paulo, Brazil, to Zürich, Switzerland, with Jose\u0301 Mourinho."
    body = call({"text": text}).json()
    assert_exact(text, body["entities"])
    labels = {e["text"]: e["label"] for e in body["entities"]}
    assert labels.get("Zoë Kravitz") == "PERSON"
    assert labels.get("São Paulo") == "GPE" and labels.get("Zürich") == "GPE"
    assert labels.get("Jose\u0301 Mourinho") == "PERSON"  # the decomposed é: e + U+0301


def test_batch_equals_single_calls_and_plain_text(call):
    texts = [MERKEL, "Satya Nadella said Microsoft will open an office in Oslo next year.", "nothing to see here"]
    batch = call({"texts": texts}).json()
    assert [set(r) for r in batch["results"]] == [{"entities", "tokens", "truncated"}] * 3
    for text, result in zip(texts, batch["results"]):
        single = call({"text": text}).json()
        assert spans(single["entities"]) == spans(result["entities"])
        for a, b in zip(single["entities"], result["entities"]):
            assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        assert_exact(text, result["entities"])
    plain = call(data=texts[1].encode(), content_type="text/plain").json()
    assert spans(plain["entities"]) == spans(batch["results"][1]["entities"])


def test_long_text_runs_in_overlapping_windows(call):
    """A text many windows long, one paragraph repeated: every repetition's names are found, at
    that repetition's offsets, and the same in each (the windows fall at different places in each
    one, so they are merged, not truncated)."""
    filler = "The committee discussed the budget, the schedule and several other matters at length. "
    unit = MERKEL + " " + filler * 3
    text = unit * 24
    body = call({"text": text}).json()
    assert body["truncated"] is False and body["tokens"] > 4 * tokens.max_tokens.default  # several windows
    assert_exact(text, body["entities"])
    names = ("PERSON", "ORG", "GPE")  # the filler's words may flicker with context; the names must not
    per_unit = [[] for _ in range(24)]
    for t, label, s, e in spans(body["entities"]):
        if label in names:
            per_unit[s // len(unit)].append((t, label, s % len(unit), e - (s // len(unit)) * len(unit)))
    # The first repetition starts the text; the others follow the filler, so they are alike.
    assert all(u == per_unit[1] for u in per_unit[2:]), per_unit
    for u in per_unit[:2]:
        assert ("Angela Merkel", "PERSON", 0, 13) in u and ("Paris", "GPE", 37, 42) in u, u


@pytest.mark.parametrize(
    "payload, data, content_type, status, code",
    [
        (None, b"  \n ", "text/plain", 400, "empty_text"),
        (None, b"\xc3\x28 invalid utf-8", "text/plain", 400, "invalid_encoding"),
        (None, b'{"text": "bad \\ud800 surrogate"}', "application/json", 400, "invalid_text"),
        (None, b"hello", "image/png", 415, "unsupported_media_type"),
        ({"text": ["not", "a", "string"]}, None, None, 400, "invalid_field"),
        ({"texts": ["ok", 5]}, None, None, 400, "invalid_field"),
        ({"texts": []}, None, None, 400, "empty_text"),
        ({"texts": ["x"] * 33}, None, None, 413, "too_many_texts"),
        ({"text": "x" * 20001}, None, None, 413, "text_too_long"),
        ({"txt": "typo"}, None, None, 400, "missing_field"),
    ],
)
def test_bad_input_gets_a_json_4xx(call, payload, data, content_type, status, code):
    r = call(payload, data=data, content_type=content_type)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert "Traceback" not in r.text
