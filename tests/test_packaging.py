"""What installing the package brings: the library runs on its runtime dependencies alone,
and every extra and dependency group the README and the docs tell a reader to install
exists."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_library_imports_without_the_extras() -> None:
    """A platform mounting the library needs no server, FastAPI or PostgreSQL driver."""
    blocked = ["uvicorn", "fastapi", "asyncpg", "httpx2"]
    program = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import starlette_broker_oauth, starlette_broker_oauth.integrations.starlette\n"
        "import starlette_broker_oauth.web.hosted, starlette_broker_oauth.cli\n"
        "from starlette_broker_oauth import MemoryStorage, OAuthSettings, create_oauth_app\n"
        "from starlette_broker_oauth.web.hosted import HostedConsent\n"
        "class Nobody:\n"
        "    async def current_user(self, request): return None\n"
        "    def login_url(self, request): return '/login'\n"
        "    def switch_user_url(self, request): return '/logout'\n"
        "create_oauth_app(settings=OAuthSettings(issuer='https://b.example'),\n"
        "    storage=MemoryStorage(),\n"
        "    consent=HostedConsent(session=Nobody(), secret_key='k' * 32))\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert answer.returncode == 0, answer.stderr
    dependencies = " ".join(PROJECT["project"]["dependencies"])
    assert not {name for name in blocked if name in dependencies}


def test_the_extras_and_groups_the_docs_install_exist() -> None:
    extras = set(PROJECT["project"]["optional-dependencies"])
    groups = set(PROJECT["dependency-groups"])
    named_extras: set[str] = set()
    named_groups: set[str] = set()
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for line in page.read_text().splitlines():
            if "pip install" not in line:
                continue
            for found in re.findall(r"(?:\.|starlette-broker-oauth)\[([\w,-]+)\]", line):
                named_extras.update(found.split(","))
            named_groups.update(re.findall(r"--group[ =]([a-z][\w-]*)", line))
    assert {"demo", "fastapi", "postgres"} <= named_extras
    assert "docs" in named_groups
    assert named_extras <= extras, named_extras - extras
    assert named_groups <= groups, named_groups - groups
