"""The documentation: every Python block of README.md and docs/ runs or is type-checked,
and the site builds with ``mkdocs build --strict``.

A block is handled by the HTML comment on the line before it (blank lines between
allowed):

- none: a complete module; it is type-checked and run, as a script, in a scratch
  directory shared by the page's blocks;
- ``<!-- file: NAME.py -->``: the file ``NAME.py`` of a page that builds one, run as a
  script in that directory in the page's order; later blocks import it;
- ``<!-- fragment: PRELUDE -->``: a piece of a program, type-checked after the named
  prelude below (which declares what it assumes) and not run;
- ``<!-- not run: REASON -->``: a complete module that is type-checked but not run
  (it serves forever, or needs PostgreSQL).

``<!-- with files from PAGE: A.py, B.py -->`` on a page runs those file blocks of another
page after its own, in its directory.

Blocks are type-checked by mypy in strict mode, relaxed for the blocks themselves to
``check_untyped_defs`` so that examples need not annotate every function; the docs' own
code (the MkDocs hooks and the Griffe extension) is held to strict mode.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import runpy
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path

import pytest
from mypy import api as mypy_api

from starlette_broker_oauth.web.openapi import openapi_document

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]

# What fragments assume, by name: each is type-checked in front of its blocks.
PRELUDES = {
    # A platform's app and its parts, as the README and the tutorial build them.
    "platform": """
from starlette.applications import Starlette
from starlette_broker_oauth import OAuthSettings, Storage

settings: OAuthSettings
storage: Storage
oauth: Starlette
""",
    # The platform's own login and accounts, which the hosted pages ask about.
    "sessions": """
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol
from starlette.requests import Request
from starlette_broker_oauth import OAuthSettings, Storage

settings: OAuthSettings
storage: Storage


@dataclass
class PlatformAccount:
    id: uuid.UUID
    nickname: str


@dataclass
class PlatformUser:
    display_name: str
    accounts: list[PlatformAccount]


class PlatformSessions(Protocol):
    async def user_of(self, request: Request) -> PlatformUser | None: ...


my_sessions: PlatformSessions
""",
    # The hosted pages' session hook and a template engine.
    "templates": """
from typing import Any, Protocol
from starlette_broker_oauth.web.hosted import SessionHook


class Template(Protocol):
    def render(self, **values: Any) -> str: ...


class Environment(Protocol):
    def get_template(self, name: str) -> Template: ...


def Session() -> SessionHook:
    raise NotImplementedError


my_templates: Environment
key: str
""",
    # The platform's own account table.
    "accounts table": """
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol
from starlette.applications import Starlette
from starlette_broker_oauth import OAuthSettings, Storage

settings: OAuthSettings
storage: Storage
oauth: Starlette


@dataclass
class AccountRow:
    id: uuid.UUID
    is_live: bool


@dataclass
class AppRow:
    id: str
    secret_sha256: str
    name: str
    callback_urls: list[str]
    enabled: bool
    live_approved: bool


class PlatformDatabase(Protocol):
    async def fetch_account(self, account_id: uuid.UUID) -> AccountRow | None: ...
    async def account_partner(self, account_id: uuid.UUID) -> str | None: ...
    async def fetch_app(self, app_id: str) -> AppRow | None: ...
    async def disable_app(self, app_id: str) -> None: ...


my_db: PlatformDatabase
""",
    # A platform's repositories under test, and its test database.
    "repositories": """
import uuid
from starlette_broker_oauth import Account, AccountRepository, MemoryStorage


class PlatformAccounts(AccountRepository):
    async def get_account(self, account_id: uuid.UUID) -> Account | None:
        raise NotImplementedError

    async def add(self, account: Account) -> Account:
        raise NotImplementedError


class PlatformGrantStore(MemoryStorage):  # its own tables, behind the same interface
    def __init__(self, dsn: str) -> None:
        super().__init__()


test_dsn: str
""",
    # Inside an async function of a platform with the OAuth app mounted.
    "connected apps": """
import uuid
from starlette.applications import Starlette

oauth: Starlette
account_id: uuid.UUID
client_id: str


async def _() -> None:
""",
}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the first line of code
    code: str
    kind: str  # "run", "file", "fragment" or "not run"
    value: str = ""
    title: str = ""  # the fence's title="…", shown above the block on the site

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def source(self) -> str:
        """The module to type-check."""
        if self.kind != "fragment":
            return self.code
        prelude = PRELUDES.get(self.value, "").strip("\n")  # unknown: see the test below
        if prelude.endswith(":"):  # the block is a function body
            body = "".join(
                "    " + line if line.strip() else line for line in self.code.splitlines(True)
            )
            return prelude + "\n" + body
        return prelude + "\n\n" + self.code


_MARKER = re.compile(r"^\s*<!--\s*(file|fragment|not run):\s*(.+?)\s*-->\s*$")
_USES = re.compile(r"^\s*<!--\s*with files from (\S+):\s*(.+?)\s*-->\s*$")
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)(.*)$")
_TITLE = re.compile(r'title="([^"]*)"')


@dataclass(frozen=True)
class Page:
    path: Path
    blocks: tuple[Block, ...]
    uses: tuple[tuple[str, str], ...]  # (page, file name)
    stray_markers: tuple[int, ...]  # lines of markers no Python block follows


@cache
def page(path: Path) -> Page:
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    uses: list[tuple[str, str]] = []
    markers: dict[int, tuple[str, str]] = {}
    stray: list[int] = []
    pending: int | None = None  # line index of a marker waiting for its block
    i = 0
    while i < len(lines):
        line = lines[i]
        if (found := _USES.match(line)) is not None:
            uses += [(found[1], name.strip()) for name in found[2].split(",")]
        elif (found := _MARKER.match(line)) is not None:
            if pending is not None:
                stray.append(pending + 1)
            pending = i
            markers[i] = (found[1], found[2])
        elif (fence := _FENCE.match(line)) is not None:
            indent, ticks, language = fence[1], fence[2], fence[3]
            titled = _TITLE.search(fence[4])
            title = titled[1] if titled is not None else ""
            end = i + 1
            while end < len(lines) and not lines[end].strip().startswith(ticks):
                end += 1
            if language in {"python", "py"}:
                code = "\n".join(
                    text[len(indent) :] if text.startswith(indent) else text.lstrip()
                    for text in lines[i + 1 : end]
                )
                kind, value = markers[pending] if pending is not None else ("run", "")
                blocks.append(Block(path, i + 2, code + "\n", kind, value, title))
            elif pending is not None:
                stray.append(pending + 1)
            pending = None
            i = end
        elif line.strip() and pending is not None and not line.strip().startswith("<!--"):
            stray.append(pending + 1)
            pending = None
        i += 1
    if pending is not None:
        stray.append(pending + 1)
    return Page(path, tuple(blocks), tuple(uses), tuple(stray))


def used_blocks(of: Page) -> list[Block]:
    """The file blocks of other pages that ``of`` runs after its own."""
    found = []
    for other, name in of.uses:
        files = {b.value: b for b in page(DOCS / other).blocks if b.kind == "file"}
        assert name in files, f"{of.path.name} uses {name} from {other}, which has no such file"
        found.append(files[name])
    return found


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_every_block_is_handled() -> None:
    """Every marker belongs to a Python block and names a known prelude or a module file;
    a block titled as a file is marked as that file; every file a page uses exists."""
    problems = []
    for path in PAGES:
        found = page(path)
        problems += [
            f"{page_id(path)}:{n}: marker before no Python block" for n in found.stray_markers
        ]
        for block in found.blocks:
            if block.kind == "fragment" and block.value not in PRELUDES:
                problems.append(f"{block.name}: unknown prelude {block.value!r}")
            if block.kind == "file" and not re.fullmatch(r"[a-z_]\w*\.py", block.value):
                problems.append(f"{block.name}: {block.value!r} is not a module file name")
            if block.title and (block.kind, block.value) != ("file", block.title):
                problems.append(f"{block.name}: titled {block.title!r}, not marked as that file")
        used_blocks(found)
    assert not problems, "\n".join(problems)
    assert sum(len(page(path).blocks) for path in PAGES) > 20


# --- Type-checking ---------------------------------------------------------------------

_RELAXED = """
disallow_untyped_defs = False
disallow_incomplete_defs = False
disallow_untyped_calls = False
disallow_untyped_decorators = False
disallow_any_generics = False
warn_return_any = False
check_untyped_defs = True
"""


def _module(block: Block, index: int) -> str:
    if block.kind == "file":
        return block.value.removesuffix(".py")
    return f"docs_block_{index}"


def _type_check(blocks: list[Block], directory: Path, extra: list[Path]) -> dict[Block, list[str]]:
    """mypy's errors for each block (and, under the key of no block, for ``extra``)."""
    directory.mkdir(parents=True)
    files: dict[str, Block] = {}
    errors: dict[Block, list[str]] = {}
    for index, block in enumerate(blocks):
        try:  # a syntax error would stop mypy for every block
            compile(block.source(), block.name, "exec")
        except SyntaxError as exc:
            errors[block] = [f"{block.name}: {exc}"]
            continue
        file = directory / f"{_module(block, index)}.py"
        assert file.name not in files, (
            f"{block.name} and {files[file.name].name} are both {file.name}"
        )
        file.write_text(block.source())
        files[file.name] = block
    modules = ",".join(name.removesuffix(".py") for name in files)
    config = directory / "mypy.ini"
    config.write_text(
        "[mypy]\npython_version = 3.11\nstrict = True\nwarn_unused_configs = False\n"
        f"[mypy-{modules}]\n{_RELAXED}"
        "[mypy-authlib.*,requests_oauthlib.*,aiosqlite.*,asyncpg.*]\n"
        "ignore_missing_imports = True\n"
    )
    # mypy raises the recursion limit for the whole process; it is put back, so that the
    # rest of the suite (deeply nested JSON bodies) sees the interpreter's own.
    limit = sys.getrecursionlimit()
    try:
        stdout, stderr, status = mypy_api.run(
            [
                "--config-file",
                str(config),
                "--cache-dir",
                str(ROOT / ".mypy_cache" / "docs"),
                "--no-error-summary",
                "--show-error-codes",
                *(str(directory / name) for name in files),
                *map(str, extra),
            ]
        )
    finally:
        sys.setrecursionlimit(limit)
    assert status in (0, 1), stdout + stderr
    offsets = {block: block.source().count("\n") - block.code.count("\n") for block in blocks}
    for line in stdout.splitlines():
        found = re.match(r"(.+?):(\d+): (error: .*)", line)
        if found is None:
            continue
        owner = files.get(Path(found[1]).name)
        if owner is None:
            errors.setdefault(Block(Path(found[1]), 0, "", "extra"), []).append(line)
            continue
        number = int(found[2]) - offsets[owner]
        where = f"{owner.name.rsplit(':', 1)[0]}:{owner.line + number - 1}"
        if number < 1:
            where = f"{owner.name}: the prelude {owner.value!r}, line {found[2]}"
        errors.setdefault(owner, []).append(f"{where}: {found[3]}")
    return errors


@pytest.fixture(scope="module")
def type_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[Block, list[str]]:
    """Type-check every block: the pages that build files each on their own (their
    module names may repeat another page's), all the others and the docs' own code
    together."""
    errors: dict[Block, list[str]] = {}
    shared: list[Block] = []
    for number, path in enumerate(PAGES):
        found = page(path)
        own = [*found.blocks, *used_blocks(found)]
        if any(b.kind == "file" for b in own):
            errors |= _type_check(own, tmp_path_factory.mktemp("mypy") / str(number), [])
        else:
            shared += own
    extra = [DOCS / "hooks.py", DOCS / "griffe_extensions.py"]
    errors |= _type_check(shared, tmp_path_factory.mktemp("mypy") / "shared", extra)
    return errors


@pytest.mark.parametrize("path", [p for p in PAGES if page(p).blocks], ids=page_id)
def test_blocks_type_check(path: Path, type_errors: dict[Block, list[str]]) -> None:
    found = page(path)
    messages = [m for block in found.blocks for m in type_errors.get(block, [])]
    assert not messages, "\n".join(messages)


def test_the_docs_code_type_checks(type_errors: dict[Block, list[str]]) -> None:
    """docs/hooks.py and the Griffe extension are held to the project's strict mypy."""
    messages = [m for block, found in type_errors.items() if block.kind == "extra" for m in found]
    assert not messages, "\n".join(messages)


# --- Running ---------------------------------------------------------------------------


def _forget(modules: set[str]) -> None:
    for name in modules:
        sys.modules.pop(name, None)


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """Blocks may add log filters and handlers (a page on logs does): take them away."""
    loggers = [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]
    before = [(logger, list(logger.filters), list(logger.handlers)) for logger in loggers]
    try:
        yield
    finally:
        for logger, filters, handlers in before:
            logger.filters[:] = filters
            logger.handlers[:] = handlers


@pytest.mark.parametrize(
    "path",
    [p for p in PAGES if any(b.kind in {"run", "file"} for b in page(p).blocks)],
    ids=page_id,
)
def test_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each page's complete blocks and files run in order, as scripts, in one directory."""
    found = page(path)
    blocks = [b for b in (*found.blocks, *used_blocks(found)) if b.kind in {"run", "file"}]
    modules = {b.value.removesuffix(".py") for b in blocks if b.kind == "file"}
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    _forget(modules)
    try:
        with _logging_restored():
            for block in blocks:
                name = block.value if block.kind == "file" else f"block_{block.line}.py"
                file = tmp_path / name
                file.write_text(block.code)
                try:
                    runpy.run_path(str(file), run_name="__main__")
                except BaseException as exc:
                    raise AssertionError(f"{block.name} failed: {exc!r}") from exc
    finally:
        _forget(modules)


# --- The site --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as ``mkdocs build --strict`` builds it: a warning fails."""
    directory = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return directory


def test_the_site_builds_strictly(site: Path) -> None:
    """Every page is built, and every image it shows is there (mkdocs checks Markdown
    links, not the sources of images written in HTML)."""
    assert (site / "reference" / "python" / "storage" / "index.html").is_file()
    shown = 0
    for html in site.rglob("*.html"):
        for source in re.findall(r'<img[^>]* src="([^"]+)"', html.read_text()):
            if "://" not in source and not source.startswith("data:"):
                assert (html.parent / source).resolve().is_file(), f"{html}: {source}"
                shown += 1
    assert shown >= 5


def test_the_http_reference_is_the_served_document(site: Path) -> None:
    """reference/openapi.json is the document the app serves, and the HTTP API page
    lists every one of its operations with every status."""
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    document = hooks.openapi()
    assert document == openapi_document(
        hooks.OAuthSettings(
            issuer=hooks.ISSUER,
            access_token_lifetime=timedelta(hours=1),
            refresh_token_lifetime=timedelta(days=30),
        ),
        hosted_consent=True,
        connections=True,
    )
    assert json.loads((site / "reference" / "openapi.json").read_text()) == document
    html = (site / "reference" / "http-api" / "index.html").read_text()
    for operations in document["paths"].values():
        for operation in operations.values():
            assert f'id="{operation["operationId"]}"' in html
    for name in document["components"]["schemas"]:
        assert f'id="schema-{name}"' in html


def test_the_cli_reference_covers_every_command(site: Path) -> None:
    html = (site / "reference" / "cli" / "index.html").read_text()
    for command in (
        "demo",
        "db purge",
        "client rotate-secret",
        "partner rotate-secret",
        "account give",
        "connections revoke",
    ):
        assert f"broker-oauth {command}" in html


def test_readme_links_resolve() -> None:
    """The README's relative links work on GitHub: each names a file of the repository."""
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert local
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, missing


def test_the_tests_the_docs_cite_exist() -> None:
    """Every ``test_file.py::test_name`` the docs cite as proof is a test of this suite."""
    cited = 0
    for path in PAGES:
        for file, name in re.findall(r"`(?:tests/)?([\w/]+\.py)::(\w+)`", path.read_text()):
            source = ROOT / "tests" / file
            assert source.is_file(), f"{page_id(path)} cites {file}, which is not in tests/"
            assert re.search(rf"def {name}\b", source.read_text()), f"{page_id(path)}: {name}"
            cited += 1
    assert cited > 40
