"""The documentation site: strict MkDocs build, executed code blocks, README landing page and its links."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(path for path in DOCS.rglob("*.md") if "_ext" not in path.parts)
FENCE = re.compile(r"^```(?P<lang>\w*)[^\n]*\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SKIP = re.compile(r"<!-- skip: *(?P<reason>.*?) *-->\s*$")
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def mkdocs_build(config: Path, site_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site_dir)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def code_blocks(path: Path, lang: str) -> list[tuple[int, str, str | None]]:
    """``(line, code, skip reason or None)`` of every top-level fenced block of language ``lang`` in ``path``."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        if match["lang"] != lang:
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.match(before)
        if skip is not None and not skip["reason"]:
            raise AssertionError(f"{path.name}: a `<!-- skip: -->` marker without a reason")
        blocks.append((text.count("\n", 0, match.start()) + 2, match["code"], skip and skip["reason"]))
    return blocks


def test_docs_site_builds_in_strict_mode(tmp_path):
    result = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    callbacks = (tmp_path / "site" / "reference" / "callbacks" / "index.html").read_text(encoding="utf-8")
    assert 'id="lightning_skd.callbacks.SelfKDCallback"' in callbacks  # the API reference was generated
    assert ":class:" not in callbacks  # the docstrings' Sphinx roles were rewritten
    results = (tmp_path / "site" / "results" / "index.html").read_text(encoding="utf-8")
    assert "Baseline + TS" in results  # the demo table, included from README.md


def test_docs_strict_build_fails_on_a_broken_cross_reference(tmp_path):
    """The site's own configuration rejects a reference to an object that does not exist."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(
        "# Broken\n\n[`LinearAlpha`][lightning_skd.callbacks.LinearAlpha]\n[`Gone`][lightning_skd.callbacks.Gone]\n\n"
        "::: lightning_skd.callbacks.alpha_schedules\n"
    )
    config.update(docs_dir=str(tmp_path / "docs"), nav=["index.md"], hooks=[str(DOCS / "_ext" / "hooks.py")])
    (plugin,) = [entry["mkdocstrings"] for entry in config["plugins"] if "mkdocstrings" in entry]
    handler = plugin["handlers"]["python"]
    handler["options"]["extensions"] = [str(DOCS / "_ext" / "sphinx_roles.py")]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    result = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "lightning_skd.callbacks.Gone" in result.stderr
    assert "lightning_skd.callbacks.LinearAlpha" not in result.stderr


def test_docs_nav_lists_every_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def entries(nav):
        for item in nav:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from entries(value) if isinstance(value, list) else [value]

    listed = set(entries(config["nav"]))
    assert listed == {path.relative_to(DOCS).as_posix() for path in PAGES}


PYTHON_PAGES = [path for path in [README, *PAGES] if any(skip is None for _, _, skip in code_blocks(path, "python"))]


# README's 10-line example trains a module without validation_step on a DataModule that has a validation split.
@pytest.mark.filterwarnings("ignore:You passed in a .val_dataloader. but have no .validation_step")
@pytest.mark.parametrize("page", PYTHON_PAGES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_docs_python_blocks_run(page, tmp_path, monkeypatch, one_thread):
    """The page's Python blocks, in order, in one namespace, in an empty working directory."""
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    ran = 0
    for line, code, skip in code_blocks(page, "python"):
        if skip is None:
            exec(compile(code, f"{page.relative_to(ROOT)}:{line}", "exec"), namespace)
            ran += 1
    assert ran > 0


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda path: path.relative_to(ROOT).as_posix())
def test_docs_yaml_blocks_parse(page):
    for line, code, _ in code_blocks(page, "yaml"):
        try:
            yaml.safe_load(code)
        except yaml.YAMLError as error:
            raise AssertionError(f"{page.name}:{line}: the YAML block does not parse: {error}") from error


def test_readme_is_a_short_landing_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    assert "make demo   #" in text and "make test   #" in text
    assert text.count("<!-- demo-results:start -->") == 1 and text.count("<!-- demo-results:end -->") == 1
    block = text[text.index("<!-- demo-results:start -->") : text.index("<!-- demo-results:end -->")]
    assert "| + Self-KD |" in block and "Printed verdict:" in block
    assert len(code_blocks(README, "python")) == 1


def test_readme_relative_links_reach_files_and_headings():
    text = README.read_text(encoding="utf-8")
    targets = [match["target"] for match in LINK.finditer(text) if not re.match(r"^[a-z]+:", match["target"])]
    assert any(target.startswith("docs/") for target in targets)
    for target in targets:
        path, _, anchor = target.partition("#")
        file = ROOT / path
        assert file.is_file(), f"README.md links to {target}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+?)\s*$", file.read_text(encoding="utf-8"), re.MULTILINE)
            assert anchor in {slugify(heading, "-") for heading in headings}, f"README.md: no heading for {target}"
