"""docs/functions.md's complete handler runs as the page says: packaged as faas-cli builds it
(handler folder as a package, common/ copied in) and called as the template calls it."""

from __future__ import annotations

import re
import shutil
import sys
import types

from helpers import ROOT, Event


def test_the_documented_handler_works(tmp_path):
    page = (ROOT / "docs" / "functions.md").read_text()
    section = page.split("## A complete handler", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    pkg = tmp_path / "greeter_doc_fn"
    pkg.mkdir()
    (pkg / "__init__.py").touch()
    (pkg / "handler.py").write_text(code)
    shutil.copytree(ROOT / "common", pkg / "common", ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(tmp_path))
    try:
        from greeter_doc_fn import handler  # the package exists only now
    finally:
        sys.path.remove(str(tmp_path))
    context = types.SimpleNamespace(hostname="greeter-0")
    ok = handler.handle(Event({"name": " Ada "}), context)
    assert ok["statusCode"] == 200 and ok["body"] == {"greeting": "Hello, Ada!", "served_by": "greeter-0"}
    missing = handler.handle(Event({"nom": "Ada"}), context)
    assert missing["statusCode"] == 400 and missing["body"]["error"]["code"] == "missing_field"
    assert handler.handle(Event(b"", method="GET"), context)["statusCode"] == 405
    assert handler.handle(Event(b"{"), context)["body"]["error"]["code"] == "invalid_json"
