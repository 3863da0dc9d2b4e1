"""deploy/yujing.service: a unit systemd accepts without a warning, hardened, quoted by the README.

`systemd-analyze verify` runs when the tool is there (.ci/run installs it;
under CI a missing tool fails the test, as a missing Chromium does); it exits
0 even for an unknown key or a bad value, so the test also wants its output
empty. Where it is missing the file is still checked for every hardening key.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "yujing.service"
PROGRAM = "/opt/yujing/bin/yujing"

HARDENING = {
    "User": "yujing",
    "EnvironmentFile": "/etc/yujing/yujing.env",
    "ProtectSystem": "strict",
    "ReadWritePaths": "/var/lib/yujing",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallFilter": "@system-service",
    "CapabilityBoundingSet": "",
}


def keys(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if re.match(r"^[A-Za-z]+=", line))
    return {key: value for key, value in pairs}


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing under CI; .ci/run installs Debian's systemd")
        pytest.skip("systemd-analyze not installed (Debian: apt install systemd)")
    return tool


def runnable_copy(tmp_path: Path) -> Path:
    """The unit run by this checkout's `yujing` (verify wants the program to exist)."""
    program = Path(sys.executable).with_name("yujing")
    assert program.is_file(), f"{program}: install the project (make venv)"
    copy = tmp_path / "yujing.service"
    copy.write_text(UNIT.read_text(encoding="utf-8").replace(PROGRAM, str(program)))
    return copy


def test_the_unit_has_every_hardening_key() -> None:
    found = keys(UNIT.read_text(encoding="utf-8"))
    assert {key: found.get(key) for key in HARDENING} == HARDENING
    assert found["ExecStart"] == f"{PROGRAM} run"


def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(tmp_path: Path) -> None:
    tool = systemd_analyze()
    done = subprocess.run(
        [tool, "verify", str(runnable_copy(tmp_path))], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == "", "systemd ignores what it warns about"


def test_systemd_analyze_verify_would_catch_a_typo(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key is reported."""
    tool = systemd_analyze()
    copy = runnable_copy(tmp_path)
    copy.write_text(copy.read_text().replace("ProtectHome=yes", "ProtectHom=yes"))
    done = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True, check=False)
    assert "ProtectHom" in done.stderr


def test_systemd_rates_the_unit_exposure_low(tmp_path: Path) -> None:
    tool = systemd_analyze()
    done = subprocess.run(
        [tool, "security", "--offline=yes", str(runnable_copy(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for yujing\.service: ([\d.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= 2.0, done.stdout


def test_the_readme_quotes_the_unit_file_as_it_is() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Deploy (systemd)", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```ini\n(.*?)```", section, flags=re.S)
    assert blocks == [UNIT.read_text(encoding="utf-8")]
