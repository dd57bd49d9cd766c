"""Griffe extension for the API reference: the docstrings' reStructuredText habits in
Markdown.

- Sphinx roles (:class:`~.models.Client`, :meth:`TokenVerifier.verify`, :mod:`.render`)
  become cross-references to the object they name, or plain code when it is not rendered
  on the site;
- ``a, b: text`` in a ``Parameters:`` block documents each of ``a`` and ``b``;
- a paragraph ending in ``::`` before a literal block ends in ``:``;
- the fixtures a contract's docstring asks for (``Fixtures to provide:``) become a list.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

__all__ = ["RestructuredText"]

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|data|attr|exc|obj):`(?P<target>[^`]+)`")
_GROUPED = re.compile(
    r"^(?P<indent>[ ]+)(?P<names>[A-Za-z_]\w*(?:, [A-Za-z_]\w*)+):(?P<text>.*)$", re.M
)
_LITERAL = re.compile(r"(?<=\S)::\n\n")
_FIXTURES = re.compile(
    r"^(?P<indent> *)Fixtures to provide:\n(?P<body>(?:(?P=indent) {4}.*\n?)+)", re.M
)


class RestructuredText(griffe.Extension):
    """Rewrite every docstring of the loaded package before it is parsed."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        paths = _paths(pkg)
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _markdown(obj.docstring.value, obj, paths)


def _objects(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            found += _objects(member)
    return found


def _paths(pkg: griffe.Module) -> dict[str, str]:
    """Every name an object has in the package (where it is defined, and each module that
    imports it), and the path where it is defined."""
    paths = {pkg.path: pkg.path}
    for obj in _objects(pkg):
        for name, member in obj.members.items():
            canonical = member.target_path if isinstance(member, griffe.Alias) else member.path
            paths[f"{obj.path}.{name}"] = canonical
    return paths


def _resolve(target: str, obj: griffe.Object, paths: dict[str, str]) -> str | None:
    """The path where what a role names is defined, found as Sphinx finds it: the name in
    the current module or class and its parents, else the one name that ends so."""
    name = target.lstrip(".")
    scope: griffe.Object | None = obj if obj.is_module or obj.is_class else obj.parent
    while scope is not None:
        if f"{scope.path}.{name}" in paths:
            return paths[f"{scope.path}.{name}"]
        scope = scope.parent
    if name in paths:
        return paths[name]
    matches = {paths[path] for path in paths if path.endswith("." + name)}
    return matches.pop() if len(matches) == 1 else None


def _markdown(text: str, obj: griffe.Object, paths: dict[str, str]) -> str:
    def role(match: re.Match[str]) -> str:
        target = match["target"]
        short = target.startswith("~")
        target = target.removeprefix("~")
        shown = target.rsplit(".", 1)[-1] if short else target.lstrip(".")
        path = _resolve(target, obj, paths)
        if path is None:
            return f"`{shown}`"
        return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'

    def grouped(match: re.Match[str]) -> str:
        indent, text = match["indent"], match["text"]
        return "\n".join(f"{indent}{name}:{text}" for name in match["names"].split(", "))

    def fixtures(match: re.Match[str]) -> str:
        entry = re.compile(rf"^{match['indent']} {{4}}([A-Za-z_]\w*): ", re.M)
        listed = entry.sub(lambda e: f"{match['indent']}    - `{e[1]}`: ", match["body"])
        return f"{match['indent']}Fixtures to provide:\n{listed}"

    text = _ROLE.sub(role, text)
    text = _GROUPED.sub(grouped, text)
    text = _FIXTURES.sub(fixtures, text)
    return _LITERAL.sub(":\n\n", text)
