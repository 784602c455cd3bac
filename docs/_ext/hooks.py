"""MkDocs hooks of the documentation site (see ``mkdocs.yml``): text kept elsewhere in the repository, included.

A line ``<!-- include: PATH -->`` in a page is replaced by the Markdown file ``PATH`` (relative to the repository
root), and ``<!-- include: PATH#NAME -->`` by the block of that file between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->``. So the results of ``results/*/README.md`` and the demo's table in ``README.md`` (regenerated
there) have one source. Relative links of the included text are rewritten for the page: a link into ``docs/``
points at that page of the site, a link to another file of the repository becomes its path as inline code (the site
does not hold it); a first-level heading of an included file is dropped when the page has its own. A missing file or
block fails the build.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

INCLUDE = re.compile(r"^<!-- include: (?P<file>[\w./-]+?)(?:#(?P<name>[\w-]+))? -->$", re.MULTILINE)
LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")
H1 = re.compile(r"^# .*\n+", re.MULTILINE)


def readme_block(text: str, name: str, source: str = "README.md") -> str:
    """The lines of ``text`` strictly between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise PluginError(f"{source} must hold exactly one block `{start}` ... `{end}`.")
    return text[text.index(start) + len(start) : text.index(end)].strip("\n")


def rewrite_links(text: str, source: str, page: str) -> str:
    """Relative links of ``text`` (from the repository file ``source``) made valid on the site page ``page``.

    Both paths are relative to the repository root; ``page`` lies under ``docs/``.
    """

    def replace(match: re.Match[str]) -> str:
        target = match["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):  # a URL, an anchor of the same text, an absolute path
            return match[0]
        path, _, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
        if resolved.startswith("docs/"):
            relative = posixpath.relpath(resolved, posixpath.dirname(page))
            return f"{match['bang']}[{match['text']}]({relative}{'#' + anchor if anchor else ''})"
        return f"{match['text']} (`{resolved}` in the repository)"

    return LINK.sub(replace, text)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    """Replace every include line of a page with the text it names."""
    root = Path(config.config_file_path).parent
    page_path = posixpath.join("docs", page.file.src_uri)

    def include(match: re.Match[str]) -> str:
        path = root / match["file"]
        if not path.is_file():
            raise PluginError(f"{page.file.src_uri}: `{match[0]}` names a file that does not exist: {path}.")
        text = path.read_text(encoding="utf-8")
        if match["name"]:
            text = readme_block(text, match["name"], match["file"])
        elif markdown.lstrip().startswith("# "):
            text = H1.sub("", text, count=1) if text.lstrip().startswith("# ") else text
        return rewrite_links(text, match["file"], page_path)

    return INCLUDE.sub(include, markdown)
