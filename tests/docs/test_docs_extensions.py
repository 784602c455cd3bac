"""The site's MkDocs hooks and Griffe extension (docs/_ext/), on hand-written inputs."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import griffe
import pytest
from mkdocs.exceptions import PluginError

EXT = Path(__file__).resolve().parents[2] / "docs" / "_ext"


def load(name):
    spec = importlib.util.spec_from_file_location(f"docs_ext_{name}", EXT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


roles = load("sphinx_roles")
hooks = load("hooks")


@pytest.fixture(scope="module")
def package():
    return griffe.load("lightning_skd", search_paths=[str(EXT.parents[1])])


def test_sphinx_roles_qualified_names_become_cross_references(package):
    obj = package["callbacks"]
    text = "See :class:`~lightning_skd.SelfKDCallback` and :func:`lightning_skd.functional.aurc`."
    assert roles.rewrite(text, obj) == (
        "See [`SelfKDCallback`][lightning_skd.SelfKDCallback] and "
        "[`lightning_skd.functional.aurc`][lightning_skd.functional.aurc]."
    )


def test_sphinx_roles_relative_names_become_optional_references(package):
    method = package["callbacks.self_kd.SelfKDCallback.loss"]  # a method: resolved in its class
    assert roles.rewrite(":meth:`soft_targets`", method) == (
        '<autoref identifier="lightning_skd.callbacks.self_kd.SelfKDCallback.soft_targets" optional>'
        "`soft_targets`</autoref>"
    )


def test_sphinx_roles_foreign_and_unknown_names_become_code(package):
    obj = package["callbacks.self_kd.SelfKDCallback"]
    text = ":class:`torch.nn.Module`, :func:`~torch.topk`, :meth:`no_such_method`, :math:`x^2`"
    assert roles.rewrite(text, obj) == "`torch.nn.Module`, `topk`, `no_such_method`, `x^2`"


def test_sphinx_roles_example_sections_and_literal_blocks():
    text = "Run it::\n\n    f()\n\nExample:\n    >>> 1 + 1\n    2\n"
    assert roles.rewrite(text, None) == "Run it:\n\n    f()\n\nExamples:\n    >>> 1 + 1\n    2\n"


def test_hooks_readme_block_takes_the_text_between_the_markers():
    text = "a\n<!-- demo:start -->\n| t |\n<!-- demo:end -->\nb\n"
    assert hooks.readme_block(text, "demo") == "| t |"
    with pytest.raises(PluginError, match="exactly one block"):
        hooks.readme_block(text, "other")


def test_hooks_rewrite_links_for_the_including_page():
    text = "[cli](../../docs/cli.md#compare), [x](../../configs/x.yaml), [web](https://a.b/c), [here](#top)"
    rewritten = hooks.rewrite_links(text, "results/run/README.md", "docs/results/run.md")
    expected = "[cli](../cli.md#compare), x (`configs/x.yaml` in the repository), [web](https://a.b/c), [here](#top)"
    assert rewritten == expected


def test_hooks_include_replaces_the_comment_and_drops_a_second_title(tmp_path):
    (tmp_path / "notes.md").write_text("# Notes\n\nSee [the guide](docs/guide.md).\n")
    config = SimpleNamespace(config_file_path=str(tmp_path / "mkdocs.yml"))
    page = SimpleNamespace(file=SimpleNamespace(src_uri="sub/page.md"))
    markdown = "# Page\n\n<!-- include: notes.md -->\n"
    assert hooks.on_page_markdown(markdown, page, config, None) == "# Page\n\nSee [the guide](../guide.md).\n\n"
    with pytest.raises(PluginError, match="does not exist"):
        hooks.on_page_markdown("<!-- include: missing.md -->\n", page, config, None)
