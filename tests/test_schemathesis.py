"""Schema-driven fuzzing: schemathesis against the OpenAPI document of a running demo,
with the partner's and the client's credentials and a signed-in user, every check on.

Its summary is written to ``build/schemathesis.txt``. ``BROKER_OAUTH_SCHEMATHESIS_EXAMPLES``
and ``BROKER_OAUTH_SCHEMATHESIS_SEED`` make the run longer or differently seeded (CI uses
the defaults, so that a failure reproduces).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import requests

from .conftest import free_port
from .test_cli import demo

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = os.environ.get("BROKER_OAUTH_SCHEMATHESIS_EXAMPLES", "150")
SEED = os.environ.get("BROKER_OAUTH_SCHEMATHESIS_SEED", "20261130")


def config(credentials: dict[str, str], cookie: str) -> str:
    return f"""
headers = {{ Cookie = "{cookie}" }}

[auth.openapi.partnerBasic]
username = "{credentials["partner_key"]}"
password = "{credentials["partner_secret"]}"

[auth.openapi.clientBasic]
username = "{credentials["client_id"]}"
password = "{credentials["client_secret"]}"

[parameters]
client_id = "{credentials["client_id"]}"

# An authorization server answers a well-formed request with an unknown code, token or
# account with its documented refusal: RFC 6749 §5.2 (400) or the partner API's 422.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "422", "429"]
"""


def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    with demo(tmp_path, free_port()) as credentials:
        browser = requests.Session()
        login = browser.post(
            credentials["base_url"] + "/login",
            data={
                "username": credentials["username"],
                "password": credentials["password"],
                "next": "/",
            },
            timeout=10,
        )
        assert login.status_code == 200, login.text
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
        settings = tmp_path / "schemathesis.toml"
        settings.write_text(config(credentials, cookie))
        command = [
            str(Path(sys.executable).parent / "st"),
            "--config-file",
            str(settings),
            "run",
            credentials["base_url"] + "/oauth/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            EXAMPLES,
            "--seed",
            SEED,
            "--generation-database",
            "none",
            "--no-color",
        ]
        run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    output = run.stdout + run.stderr
    summary = output[output.find("SUMMARY") :] if "SUMMARY" in output else output[-3000:]
    report = ROOT / "build" / "schemathesis.txt"
    report.parent.mkdir(exist_ok=True)
    report.write_text(" ".join(command[3:]) + "\n" + summary)
    assert run.returncode == 0, output[-6000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counts is not None, summary
    generated, passed = (int(n) for n in counts.groups())
    assert generated == passed > 500  # it tested, and nothing failed
    assert "Selected: 13/13" in output  # every operation of the document
    log = (tmp_path / "demo.log").read_text()
    assert "Traceback" not in log
    assert "500" not in re.findall(r'" (\d{3})', log)
