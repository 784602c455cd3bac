"""Griffe extension: turn the docstrings' Sphinx roles into Markdown for mkdocstrings.

The library's docstrings (Google style) name other objects with Sphinx roles, e.g. ``:class:`~lightning_skd.X```.
Before mkdocstrings parses a docstring this extension rewrites each role:

* a fully qualified name inside the package (``:func:`~lightning_skd.functional.aurc```) becomes a cross-reference
  ``[`aurc`][lightning_skd.functional.aurc]``, which ``mkdocs build --strict`` fails on when its target is not
  documented: a renamed or removed object breaks the docs build;
* a relative name (``:meth:`state_dict```, ``:class:`Objective```) is resolved in the object's scope and becomes an
  optional cross-reference (a link where the target is documented, inline code otherwise);
* anything else (``:class:`torch.nn.Module```) becomes inline code, and so does a formula (``:math:`...```: the site
  renders no LaTeX).

A ``~`` prefix shows only the last component, as in Sphinx. A reST literal-block marker ``::`` at the end of a line
becomes ``:`` (the indented block after it is a Markdown code block already), and an ``Example:`` section becomes
``Examples:``, which Griffe renders as doctest code (it reads ``Example:`` as an admonition of Markdown text).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

PACKAGE = "lightning_skd"
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc|const):`(?P<tilde>~?)(?P<name>[\w.]+)(?:\(\))?`")
LITERAL_BLOCK = re.compile(r"(?<=\S)::$", re.MULTILINE)
MATH = re.compile(r":math:`(?P<formula>[^`]+)`")
EXAMPLE_SECTION = re.compile(r"^(?P<indent>[ ]*)Example:[ ]*$", re.MULTILINE)


def _scope(obj: griffe.Object) -> griffe.Object:
    """The object a relative name is resolved in: a function's class or module, else the object itself."""
    return obj.parent if obj.is_function and obj.parent is not None else obj


def _resolve(obj: griffe.Object, name: str) -> str | None:
    """Full path of ``name`` seen from ``obj``, or ``None`` when it cannot be found."""
    scope: griffe.Object | None = _scope(obj)
    head, _, rest = name.partition(".")
    while scope is not None:
        try:
            path = scope.resolve(head)
        except griffe.NameResolutionError:
            scope = scope.parent
            continue
        return f"{path}.{rest}" if rest else path
    return None


def rewrite(text: str, obj: griffe.Object) -> str:
    """``text`` with its Sphinx roles replaced by Markdown (see the module docstring)."""

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        shown = f"`{name.rsplit('.', 1)[-1] if match['tilde'] else name}`"
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            return f"[{shown}][{name}]"
        path = _resolve(obj, name)
        if path is not None and path.startswith(PACKAGE + "."):
            return f'<autoref identifier="{path}" optional>{shown}</autoref>'
        return shown

    text = EXAMPLE_SECTION.sub(r"\g<indent>Examples:", text)
    text = MATH.sub(r"`\g<formula>`", text)
    return LITERAL_BLOCK.sub(":", ROLE.sub(replace, text))


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of the loaded package once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s own docstring."""
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value, obj)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite the package's own docstring (``on_object`` does not see the root module)."""
        self.on_object(obj=pkg)
