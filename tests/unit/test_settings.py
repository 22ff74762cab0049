"""The one settings reader: defaults, validation with a clear message, start-up checks, and the
table in docs/configuration.md listing every variable."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from helpers import ROOT

from common import settings
from common.settings import SettingError, setting


def test_default_parse_and_bounds():
    limit = settings.Setting("LIMIT", int, 5, low=1, high=10)
    assert limit({}) == 5 and limit({"LIMIT": " "}) == 5 and limit({"LIMIT": "7"}) == 7
    with pytest.raises(SettingError, match=r"^LIMIT='abc' is not an integer$"):
        limit({"LIMIT": "abc"})
    with pytest.raises(SettingError, match=r"LIMIT='11' is out of range \(it must be from 1 to 10\)"):
        limit({"LIMIT": "11"})
    ratio = settings.Setting("RATIO", float, 0.5, low=0.0)
    assert ratio({"RATIO": "0.25"}) == 0.25
    with pytest.raises(SettingError, match="RATIO='x' is not a number"):
        ratio({"RATIO": "x"})
    prefix = settings.Setting("PREFIX", str, "results/", blank_is_unset=False)
    assert prefix({"PREFIX": ""}) == "" and prefix({}) == "results/"


def test_check_names_every_bad_value(monkeypatch):
    from common import imaging, request  # noqa: F401 - declare their settings

    monkeypatch.setenv("MAX_IMAGE_PIXELS", "abc")
    monkeypatch.setenv("MAX_BODY_BYTES", "-1")
    with pytest.raises(SettingError) as info:
        settings.check()
    assert "MAX_IMAGE_PIXELS='abc' is not an integer" in str(info.value)
    assert "MAX_BODY_BYTES='-1' is out of range" in str(info.value)


def test_a_function_with_a_bad_setting_stops_at_start_up(tmp_path):
    """The function process fails while importing its handler (handler_errors checks), with the
    message, instead of answering 500 to every request later."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from helpers import packaged_function; import pathlib;"
        "packaged_function('image-classify', pathlib.Path(sys.argv[2]))"
    )
    env = {"PATH": "/usr/bin:/bin", "MAX_IMAGE_PIXELS": "abc"}
    r = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "tests"), str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode != 0
    assert "SettingError: MAX_IMAGE_PIXELS='abc' is not an integer" in r.stderr


def test_every_setting_is_in_the_configuration_table():
    declared = set()
    for path in [*(ROOT / "common").glob("*.py"), *(ROOT / "functions").glob("*/*.py"), *(ROOT / "sai").rglob("*.py")]:
        declared |= set(re.findall(r'setting\(\s*"([A-Z0-9_]+)"', path.read_text()))
    assert {"MAX_IMAGE_PIXELS", "TRITON_URL", "MAX_TOKENS", "MAX_CANDIDATES", "S3_ENDPOINT"} <= declared
    page = (ROOT / "docs" / "configuration.md").read_text()
    table = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", page, re.MULTILINE))
    assert declared <= table, f"not in docs/configuration.md's table: {sorted(declared - table)}"


def test_setting_registers_once_per_declaration():
    before = len(settings.declared())
    s = setting("SAI_TEST_ONLY", int, 1)
    assert settings.declared()[-1] is s and len(settings.declared()) == before + 1
    settings._DECLARED.remove(s)
