"""MkDocs hooks: the reference pages drawn from the code at every build, so they cannot
go stale.

- ``reference/openapi.json``: the OpenAPI document the sub-application serves at
  ``/oauth/openapi.json``, for a server with every feature on (refresh tokens, hosted
  consent, the connected-apps page);
- ``reference/http-api.md``: each of its operations, parameters, request bodies,
  responses and schemas, where the page says ``<!-- generated: openapi -->``;
- ``reference/cli.md``: the help of ``broker-oauth`` and of every subcommand, from its
  argument parser, at ``<!-- generated: cli -->``;
- ``reference/settings.md``: every ``OAuthSettings`` field, its default and the
  environment variable ``OAuthSettings.from_env`` reads for it, at
  ``<!-- generated: settings -->``.

A page that has lost its marker fails the build.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import html
import json
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from importlib.metadata import entry_points
from typing import Any

import griffe
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

from starlette_broker_oauth import OAuthSettings
from starlette_broker_oauth.web.openapi import openapi_document

__all__ = [
    "cli_markdown",
    "on_files",
    "on_page_markdown",
    "openapi",
    "openapi_markdown",
    "settings_markdown",
]

ISSUER = "https://broker.example.com"


def openapi() -> dict[str, Any]:
    """The document of a server with every feature on."""
    settings = OAuthSettings(
        issuer=ISSUER,
        access_token_lifetime=timedelta(hours=1),
        refresh_token_lifetime=timedelta(days=30),
    )
    return openapi_document(settings, hosted_consent=True, connections=True)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add ``reference/openapi.json`` to the site."""
    content = json.dumps(openapi(), indent=2, ensure_ascii=False) + "\n"
    files.append(File.generated(config, "reference/openapi.json", content=content))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Fill each generated page's marker."""
    generators: dict[str, tuple[str, Callable[[], str]]] = {
        "reference/http-api.md": ("openapi", lambda: openapi_markdown(openapi())),
        "reference/cli.md": ("cli", cli_markdown),
        "reference/settings.md": ("settings", settings_markdown),
    }
    if page.file.src_uri not in generators:
        return markdown
    name, generate = generators[page.file.src_uri]
    marker = f"<!-- generated: {name} -->"
    if markdown.count(marker) != 1:
        raise PluginError(f"{page.file.src_uri} must hold {marker} exactly once")
    return markdown.replace(marker, generate())


# --- The HTTP API, from the OpenAPI document -------------------------------------------

_GROUPS = (
    ("Partner endpoints (Broker API)", "The partner's backend calls them with HTTP Basic."),
    ("Standard endpoints", "Third-party apps call them (RFC 6749, RFC 7009, RFC 7662)."),
    ("Hosted pages", "The user's browser; served when `consent=` is given."),
    ("Discovery", "Anyone."),
)


def _group(path: str, operation: dict[str, Any]) -> int:
    if path.startswith("/v1/"):
        return 0
    if any("clientBasic" in requirement for requirement in operation.get("security", [])):
        return 1
    if path in {"/oauth/authorize", "/oauth/connections"}:
        return 2
    return 3


def _anchor(name: str) -> str:
    return "schema-" + name


def _schema_type(schema: dict[str, Any]) -> str:
    """A schema in a few words, with links to named schemas."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[`{name}`](#{_anchor(name)})"
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
    for combination in ("oneOf", "anyOf"):
        if combination in schema:
            return " or ".join(_schema_type(option) for option in schema[combination])
    kind = schema.get("type", "any")
    if kind == "array":
        return "array of " + _schema_type(schema.get("items", {}))
    if "format" in schema:
        return f"{kind} ({schema['format']})"
    return str(kind)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _operation(method: str, path: str, operation: dict[str, Any], schemes: dict[str, Any]) -> str:
    lines = [
        f"### `{method.upper()} {path}` {{#{operation['operationId']}}}",
        "",
        _cell(operation.get("summary", "")) + ".",
        "",
    ]
    security = operation.get("security")
    if security:
        ways = []
        for requirement in security:
            if not requirement:
                ways.append("credentials in the form (`client_secret_post`)")
            for name in requirement:
                scheme = schemes.get(name, {})
                description = scheme.get("description", "")
                ways.append(f"HTTP Basic: {description}" if description else name)
        lines += ["**Authentication:** " + "; or ".join(ways), ""]
    parameters = operation.get("parameters", [])
    if parameters:
        described = any(parameter.get("description") for parameter in parameters)
        lines += ["| parameter | in | required | type |" + (" description |" if described else "")]
        lines.append("|---|---|---|---|" + ("---|" if described else ""))
        for parameter in parameters:
            row = (
                f"| `{parameter['name']}` | {parameter['in']} | "
                f"{'yes' if parameter.get('required') else 'no'} | "
                f"{_schema_type(parameter.get('schema', {}))} |"
            )
            if described:
                row += f" {_cell(parameter.get('description', ''))} |"
            lines.append(row)
        lines.append("")
    body = operation.get("requestBody")
    if body:
        kinds = ", ".join(
            f"`{media}` {_schema_type(content.get('schema', {}))}"
            for media, content in body.get("content", {}).items()
        )
        required = "required" if body.get("required") else "optional"
        lines += [f"**Request body** ({required}): {kinds}", ""]
    lines += ["| status | body | meaning |", "|---|---|---|"]
    for status, response in operation.get("responses", {}).items():
        content = response.get("content", {})
        bodies = ", ".join(_schema_type(c.get("schema", {})) for c in content.values()) or "-"
        headers = response.get("headers", {})
        notes = "".join(
            f" `{name}: {_cell(header.get('description', ''))}`."
            for name, header in headers.items()
        )
        lines.append(f"| {status} | {bodies} | {_cell(response.get('description', ''))}{notes} |")
    lines.append("")
    return "\n".join(lines)


def _schema(name: str, schema: dict[str, Any]) -> str:
    lines = [f"### `{name}` {{#{_anchor(name)}}}", ""]
    if schema.get("description"):
        lines += [_cell(schema["description"]), ""]
    options = schema.get("oneOf") or schema.get("anyOf")
    shapes = options if options else [schema]
    for number, shape in enumerate(shapes, 1):
        if options:
            lines += [f"One of these ({number} of {len(shapes)}):", ""]
        properties = shape.get("properties")
        if not properties:
            lines += [f"Type: {_schema_type(shape)}.", ""]
            continue
        required = set(shape.get("required", []))
        lines += ["| field | type | required | description |", "|---|---|---|---|"]
        for field, value in properties.items():
            lines.append(
                f"| `{field}` | {_schema_type(value)} | {'yes' if field in required else 'no'} "
                f"| {_cell(value.get('description', ''))} |"
            )
        lines.append("")
    return "\n".join(lines)


def openapi_markdown(document: dict[str, Any]) -> str:
    """Every operation of the document, by who calls it, then every schema."""
    schemes = document.get("components", {}).get("securitySchemes", {})
    grouped: list[list[str]] = [[] for _ in _GROUPS]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            grouped[_group(path, operation)].append(_operation(method, path, operation, schemes))
    parts = []
    for (title, callers), operations in zip(_GROUPS, grouped, strict=True):
        if operations:
            parts += [f"## {title}", "", callers, "", *operations]
    parts += ["## Schemas", ""]
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        parts.append(_schema(name, schema))
    return "\n".join(parts)


# --- The command line, from its argument parser -----------------------------------------


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


@contextlib.contextmanager
def _columns(width: int) -> Iterator[None]:
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def _parser() -> argparse.ArgumentParser:
    """The parser the ``broker-oauth`` command builds, caught as it starts parsing."""

    def caught(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> object:
        raise _Parsed(self)

    (script,) = entry_points(group="console_scripts", name="broker-oauth")
    main: Callable[[list[str]], object] = script.load()
    parse_args = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = caught  # type: ignore[method-assign,assignment]
    try:
        main([])
    except _Parsed as parsed:
        return parsed.parser
    finally:
        argparse.ArgumentParser.parse_args = parse_args  # type: ignore[method-assign]
    raise PluginError("broker-oauth did not parse its arguments")


def _commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _commands(sub)


def cli_markdown() -> str:
    """The help of every command, as ``broker-oauth … --help`` prints it."""
    parts = []
    with _columns(78):
        for parser in _commands(_parser()):
            level = "#" * min(2 + parser.prog.count(" "), 4)
            parts += [f"{level} `{parser.prog}`", "", "```text", parser.format_help().rstrip()]
            parts += ["```", ""]
    return "\n".join(parts)


# --- Settings, from the dataclass and OAuthSettings.from_env ----------------------------


class _Reads(dict[str, str]):
    """An environment that records the names asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.append(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.append(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.append(key)
        return super().__contains__(key)


# Values tried for each variable until one sets exactly one field.
_SAMPLES = ("7", "true", "code", "https://broker.example.com/authorize", "ES256")


def _holds(field: str) -> str:
    """What the variable of a setting holds, by the setting's type."""
    kind = str({f.name: f.type for f in dataclasses.fields(OAuthSettings)}[field])
    if "timedelta" in kind:
        return "a number of seconds"
    if "frozenset" in kind:
        return "names separated by spaces"
    if kind == "bool":
        return "`1`, `true`, `yes` or `on` (any case) for true"
    if kind == "int":
        return "a whole number"
    return "text"


def _variables() -> dict[str, str]:
    """Each variable ``from_env`` reads, and the setting it sets (found by setting it,
    alone or with those found before it: a refresh token lifetime needs an access token
    lifetime)."""
    prefix = "BROKER_OAUTH_"
    reads = _Reads({prefix + "ISSUER": ISSUER})
    OAuthSettings.from_env(reads, prefix=prefix)
    found = {prefix + "ISSUER": "issuer"}
    working = {prefix + "ISSUER": ISSUER}
    for name in dict.fromkeys(reads.asked):
        if name in found:
            continue
        for environ in ({prefix + "ISSUER": ISSUER}, dict(working)):
            base = OAuthSettings.from_env(environ)
            for value in _SAMPLES:
                try:
                    changed = OAuthSettings.from_env(environ | {name: value})
                except Exception:  # noqa: S112 - not a value of this variable's kind
                    continue
                fields = [
                    f.name
                    for f in dataclasses.fields(OAuthSettings)
                    if getattr(changed, f.name) != getattr(base, f.name)
                ]
                # One field changed, or (a switch that turns on others, such as FAPI)
                # the one the variable is named after among them.
                own = name.removeprefix(prefix).lower()
                if len(fields) == 1 or own in fields:
                    found[name] = fields[0] if len(fields) == 1 else own
                    working[name] = value
                    break
            if name in found:
                break
        else:
            raise PluginError(f"cannot tell which setting {name} sets")
    return found


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        return "required"
    if field.default is not dataclasses.MISSING:
        value = field.default
    else:
        factory: Callable[[], Any] = field.default_factory  # type: ignore[assignment]
        value = factory()
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        return f"{seconds:g} s" if seconds else "0 (off)"
    if isinstance(value, frozenset):
        return " ".join(f"`{item}`" for item in sorted(value))
    return f"`{value!r}`"


def settings_markdown() -> str:
    """A table of every field of ``OAuthSettings``, then one of its variables."""
    docstring = griffe.Docstring(OAuthSettings.__doc__ or "", lineno=1)
    described = {
        item.name: item.description
        for section in docstring.parse("google", warn_missing_types=False)
        if section.kind is griffe.DocstringSectionKind.parameters
        for item in section.value
    }
    variables = _variables()
    by_field = {setting: name for name, setting in variables.items()}
    lines = ["| setting | default | what it does |", "|---|---|---|"]
    for field in dataclasses.fields(OAuthSettings):
        if field.name not in described:
            raise PluginError(f"OAuthSettings does not describe {field.name}")
        kind = html.escape(str(field.type)).replace("|", "&#124;")
        variable = f" Environment: `{by_field[field.name]}`." if field.name in by_field else ""
        lines.append(
            f"| `{field.name}`<br><code>{kind}</code> | {_default(field)} "
            f"| {_cell(described[field.name])}{variable} |"
        )
    lines += ["", "| environment variable | setting | value |", "|---|---|---|"]
    for name, setting in variables.items():
        lines.append(f"| `{name}` | `{setting}` | {_holds(setting)} |")
    return "\n".join(lines) + "\n"
