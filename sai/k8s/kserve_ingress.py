"""KServe's release manifest with the ingress settings this project needs, so that one server-side
apply writes them (k8s/bootstrap.sh):

  curl -fsSL .../v0.20.0/kserve.yaml | python -m sai.k8s.kserve_ingress disableIstioVirtualHost=true |
    kubectl apply --server-side --force-conflicts -f -

Applying upstream's manifest and changing the key afterwards left a window, on every re-run, in
which the running KServe controller read upstream's Istio setting and made Istio objects for the
InferenceService. Here only the ConfigMap kserve/inferenceservice-config changes: its `ingress`
entry (a JSON document, kserve v0.20.0 config/configmap/inferenceservice.yaml) gets the given keys
and becomes a JSON document in the stream (JSON is YAML); every other document passes through as
it came. A key that upstream's ingress does not have is refused: KServe renamed it, and setting it
would change nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

NAMESPACE, NAME = "kserve", "inferenceservice-config"
SEPARATOR = re.compile(r"^---[ \t]*\n", re.MULTILINE)


class ManifestError(Exception):
    pass


def _is_config(doc: dict | None) -> bool:
    meta = (doc or {}).get("metadata") or {}
    return (doc or {}).get("kind") == "ConfigMap" and meta.get("name") == NAME and meta.get("namespace") == NAMESPACE


def set_ingress(stream: str, settings: dict) -> str:
    """`stream` (a multi-document manifest) with `settings` merged into the ingress JSON of
    kserve/inferenceservice-config, which must occur exactly once."""
    import yaml

    docs = SEPARATOR.split(stream)
    found = 0
    for i, text in enumerate(docs):
        if NAME not in text:
            continue
        doc = yaml.safe_load(text)
        if not _is_config(doc):
            continue
        found += 1
        try:
            ingress = json.loads(doc["data"]["ingress"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{NAMESPACE}/{NAME} has no JSON data.ingress ({exc})") from None
        unknown = sorted(set(settings) - set(ingress))
        if unknown:
            raise ManifestError(f"{NAMESPACE}/{NAME}'s ingress has no {', '.join(unknown)} (upstream renamed it?)")
        doc["data"]["ingress"] = json.dumps({**ingress, **settings}, indent=4)
        docs[i] = json.dumps(doc) + "\n"
    if found != 1:
        raise ManifestError(f"expected one ConfigMap {NAMESPACE}/{NAME} in the manifest, found {found}")
    return "---\n".join(docs)


def parse_setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE (VALUE in JSON: true, 3, '\"x\"')")
    try:
        return key, json.loads(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not JSON") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sai.k8s.kserve_ingress",
        description="Read KServe's kserve.yaml on stdin; write it with KEY=VALUE set in "
        f"{NAMESPACE}/{NAME}'s ingress JSON to stdout.",
    )
    parser.add_argument("settings", nargs="+", type=parse_setting, metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(set_ingress(sys.stdin.read(), dict(args.settings)))
    except ManifestError as exc:
        print(f"kserve_ingress: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
