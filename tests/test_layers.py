"""The layers of docs/design.md, drawn from the tree: which module may import which.

Every module of the package is placed in one layer; a module imports only modules of its
own layer or of the layers it depends on, and each third-party framework only where its
layer says.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "starlette_broker_oauth"

# A module's layer is the first entry whose name is a prefix of its name.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundations",
        (
            "settings",
            "models",
            "errors",
            "routes",
            "security",
            "clock",
            "events",
            "registration",
            "telemetry",
        ),
    ),
    ("repositories", ("storage.base", "storage.admin")),
    ("backends", ("storage",)),
    ("domain", ("core",)),
    ("contract suite", ("testing",)),
    ("protocol", ("_oauth",)),
    ("faces", ("web", "integrations", "cli", "__init__")),
]
# What each layer may import besides itself: a graph, not a line. The domain and the
# backends both depend on the repository contracts, never on each other.
DEPENDS: dict[str, set[str]] = {
    "foundations": set(),
    "repositories": {"foundations"},
    "backends": {"repositories", "foundations"},
    "domain": {"repositories", "foundations"},
    "contract suite": {"domain", "repositories", "foundations"},
    "protocol": {"domain", "repositories", "foundations"},
    "faces": {"protocol", "domain", "backends", "repositories", "foundations"},
}

# Third-party packages that only some layers may import.
CONFINED = {
    "authlib": {"protocol"},
    "greenlet": {"protocol"},
    "starlette": {"faces"},
    "fastapi": {"faces"},
    "itsdangerous": {"faces"},
    "jinja2": {"faces"},
    "markupsafe": {"faces"},
    "uvicorn": {"faces"},
    "sqlalchemy": {"backends"},
    "alembic": {"backends"},
    "aiosqlite": {"backends"},
    "asyncpg": {"backends"},
    "pytest": {"contract suite"},
    # Optional (the otel extra): imported once, where its absence is handled.
    "opentelemetry": {"foundations"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                return name
    raise AssertionError(f"{module} is in no layer: place it in LAYERS and docs/design.md")


def imports(path: Path, module: str) -> set[str]:
    """Absolute names this module imports: ``pkg:<module>`` for the package's own."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                assert node.module is not None
                if node.module.startswith("starlette_broker_oauth"):
                    own = node.module.removeprefix("starlette_broker_oauth").lstrip(".")
                    found.add("pkg:" + own)
                else:
                    found.add(node.module)
                continue
            base = package[: len(package) - (node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
            if node.module is None:  # from . import name: each name may be a module
                found.update("pkg:" + ".".join([*base, alias.name]) for alias in node.names)
            else:
                found.add("pkg:" + target)
    return found


MODULES = sorted((module_name(p), p) for p in PACKAGE.rglob("*.py") if "versions" not in p.parts)


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_module_imports_respect_the_layers(module: str, path: Path) -> None:
    layer = layer_of(module or "__init__")
    for name in imports(path, module):
        if name.startswith("pkg:"):
            target = name.removeprefix("pkg:") or "__init__"
            if target.split(".")[0] in {"", "starlette_broker_oauth"}:
                continue
            reached = layer_of(target)
            assert reached == layer or reached in DEPENDS[layer], (
                f"{module} ({layer}) imports {target} ({reached})"
            )
        else:
            top = name.split(".")[0]
            allowed = CONFINED.get(top)
            assert allowed is None or layer in allowed, f"{module} ({layer}) imports {top}"


def test_authlib_only_in_the_adapter() -> None:
    users = {m for m, p in MODULES if any(n.startswith("authlib") for n in imports(p, m))}
    assert users
    assert all(m.startswith("_oauth") for m in users), users


def test_the_package_root_holds_the_foundations_only() -> None:
    """Each layer is a folder; at the root are the vocabulary every layer shares and the
    public namespace."""
    loose = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert loose == [
        "__init__",
        "clock",
        "errors",
        "events",
        "models",
        "registration",
        "routes",
        "security",
        "settings",
        "telemetry",
    ]


def test_domain_imports_neither_http_nor_authlib() -> None:
    for module, path in MODULES:
        if layer_of(module or "__init__") in {
            "foundations",
            "repositories",
            "domain",
            "contract suite",
        }:
            third = {n.split(".")[0] for n in imports(path, module) if not n.startswith("pkg:")}
            assert not third & {"authlib", "starlette", "fastapi", "greenlet"}, module


def test_database_drivers_only_in_the_engines_configuration() -> None:
    """sqlite3, aiosqlite and asyncpg are SQLAlchemy's to drive: the package imports them
    only where the engine is configured and its failures are mapped."""
    allowed = {"storage.sqlalchemy.database"}
    for module, path in MODULES:
        drivers = {n.split(".")[0] for n in imports(path, module) if not n.startswith("pkg:")} & {
            "sqlite3",
            "aiosqlite",
            "asyncpg",
        }
        assert not drivers or module in allowed, f"{module} imports {drivers}"


def test_the_library_starts_no_thread() -> None:
    """No module starts a thread of its own (blocking calls go to anyio's worker threads;
    a ``threading.Lock`` may order them)."""
    for module, path in MODULES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n for n in imports(path, module) if not n.startswith("pkg:")}
        assert not names & {"_thread", "concurrent", "multiprocessing"}, module
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                assert node.attr not in {"Thread", "Timer", "start_new_thread"}, module
            if isinstance(node, ast.ImportFrom) and node.module == "threading":
                assert {a.name for a in node.names} <= {"Lock"}, module


# Errors: the domain's carry no HTTP, and the faces answer them in one place.

# Faces that serve no request: the command line reports any failure as one line.
NOT_SERVING = ("cli",)
BROAD = {"Exception", "BaseException"}


def _broad_handlers(tree: ast.AST) -> list[int]:
    """Lines of ``except:``, ``except Exception`` or ``except BaseException`` (alone or in
    a tuple) inside a function."""
    lines = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if not isinstance(node, ast.ExceptHandler):
                continue
            caught = node.type
            names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
            if caught is None or any(isinstance(n, ast.Name) and n.id in BROAD for n in names):
                lines.append(node.lineno)
    return sorted(set(lines))


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_no_request_handler_catches_every_exception(module: str, path: Path) -> None:
    """A face answers errors through the app's exception handlers, never per route: an
    error nobody foresaw reaches the one handler for ``Exception``, and the platform."""
    if layer_of(module or "__init__") != "faces" or module.startswith(NOT_SERVING):
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert _broad_handlers(tree) == [], f"{module} catches every exception"


STATUS_NAMES = {"status_code", "status", "http_status", "code", "codes"}


def test_no_error_of_the_tree_carries_an_http_status() -> None:
    """The error classes (errors.py is the one module that defines them) name no status
    and no Broker API code: the faces' table does."""
    from starlette_broker_oauth import errors

    tree = ast.parse((PACKAGE / "errors.py").read_text(encoding="utf-8"))
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    assert classes
    for cls in classes:
        for node in ast.walk(cls):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.name not in STATUS_NAMES, (cls.name, node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                assert node.attr not in STATUS_NAMES, (cls.name, node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                assert node.id not in STATUS_NAMES, (cls.name, node.id)
    for name, obj in vars(errors).items():
        if isinstance(obj, type) and issubclass(obj, errors.BrokerOAuthError):
            assert not STATUS_NAMES & set(dir(obj)), name


def test_every_error_class_is_in_the_errors_module() -> None:
    """One tree, in one module: nothing else in the package extends it."""
    from starlette_broker_oauth import errors

    names = {name for name, obj in vars(errors).items() if isinstance(obj, type)}
    for module, path in MODULES:
        if module == "errors":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = {
                    b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases
                }
                assert not bases & names, f"{module}.{node.name} extends the error tree"
