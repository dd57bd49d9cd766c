"""How a hosted page becomes HTML: a Jinja2 template with autoescape, looked up in the
platform's template directory first and in the package's ``templates/`` after.

The package's templates are plain HTML and CSS with no script, readable from 320 px to a
desktop and at 200 % zoom, with labelled controls, visible focus and AA contrast. Each page
template (``consent.html``, ``connections.html``, ``error.html``) extends ``base.html`` and
receives ``page``, the page's frozen value (:mod:`.pages`), and ``request``. The package's
own templates are also reachable as ``starlette_broker_oauth/NAME``, so that a platform's
``base.html`` can extend the package's.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import jinja2
from jinja2 import meta
from markupsafe import Markup
from starlette.templating import Jinja2Templates

from ...errors import ConfigurationError
from .pages import ConnectionsPage, ConsentPage, ErrorPage

__all__ = [
    "PAGE_TEMPLATES",
    "TemplateDirectory",
    "page_templates",
    "render_connections_page",
    "render_consent_page",
    "render_error_page",
]

TemplateDirectory = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
"""One template directory, or several searched in order (as ``Jinja2Templates`` takes)."""

PAGE_TEMPLATES = ("consent.html", "connections.html", "error.html")
"""The templates the hosted pages render, by name."""

PREFIX = "starlette_broker_oauth"


def _escape(value: object) -> object:
    """Autoescape with :func:`html.escape`'s entities (``&quot;``, ``&#x27;``), the ones the
    pages have always been written with; markup stays markup."""
    if isinstance(value, Markup | jinja2.Undefined):
        return value
    return Markup(html.escape(str(value)))  # noqa: S704 (escaped here)


def page_templates(directory: TemplateDirectory | None = None) -> Jinja2Templates:
    """The hosted pages' templates: the platform's ``directory`` first, then the package's.

    Every page template and every template it extends, includes or imports is found and
    parsed here, so that a missing directory or template, or a syntax error, stops the app
    from being created rather than a user's page from being shown.

    Parameters:
        directory: The platform's template directory, or several; ``None`` for the
            package's templates only.

    Raises:
        ConfigurationError: A directory is missing, or a template is missing or invalid.
    """
    return Jinja2Templates(env=_environment(_directories(directory)))


def _directories(directory: TemplateDirectory | None) -> tuple[str, ...]:
    if directory is None:
        return ()
    given = [directory] if isinstance(directory, str | os.PathLike) else list(directory)
    found = []
    for each in given:
        path = Path(each)
        if not path.is_dir():
            raise ConfigurationError(
                f"HostedConsent.template_directory: {os.fspath(each)!r} is not a directory"
            )
        found.append(str(path.resolve()))
    return tuple(found)


@cache
def _environment(directories: tuple[str, ...]) -> jinja2.Environment:
    package = jinja2.PackageLoader("starlette_broker_oauth.web.hosted", "templates")
    loaders: list[jinja2.BaseLoader] = []
    if directories:
        loaders.append(jinja2.FileSystemLoader(directories))
    loaders += [package, jinja2.PrefixLoader({PREFIX: package})]
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        finalize=_escape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    for name in PAGE_TEMPLATES:
        _check(env, name, needed_by=None, seen=set())
    return env


def _check(env: jinja2.Environment, name: str, *, needed_by: str | None, seen: set[str]) -> None:
    """Find and parse ``name`` and every template it names."""
    if name in seen:
        return
    seen.add(name)
    assert env.loader is not None
    try:
        source, filename, _ = env.loader.get_source(env, name)
        tree = env.parse(source, name, filename)
        env.get_template(name)
    except jinja2.TemplateNotFound:
        where = f" (named by {needed_by})" if needed_by else ""
        raise ConfigurationError(f"hosted page template {name!r}{where} not found") from None
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigurationError(
            f"hosted page template {exc.filename or name}, line {exc.lineno}: {exc.message}"
        ) from exc
    for named in meta.find_referenced_templates(tree):
        if named is not None:
            _check(env, named, needed_by=filename or name, seen=seen)


def _render(name: str, page: object) -> str:
    return page_templates().get_template(name).render(page=page)


def render_consent_page(page: ConsentPage) -> str:
    """The package's consent page (``consent.html``), rendered without a request."""
    return _render("consent.html", page)


def render_error_page(page: ErrorPage) -> str:
    """The package's error page (``error.html``): plain words first, the technical reason
    after; rendered without a request."""
    return _render("error.html", page)


def render_connections_page(page: ConnectionsPage) -> str:
    """The package's connected-apps page (``connections.html``), rendered without a request."""
    return _render("connections.html", page)
