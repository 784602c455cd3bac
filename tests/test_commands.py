import importlib
import re
import subprocess
import sys

import pytest

import lightning_skd
from lightning_skd.cli import SelfKDCLI
from lightning_skd.commands import COMMANDS, EXTRA_COMMANDS, _first_positional, main, plain_text

# reStructuredText that must not reach a terminal: ``literals`` and :role:`targets` (also :py:class:`...`).
REST_MARKUP = re.compile(r"``|:(?:[a-z]+:)?[a-z]+:`")


def listed(text: str, name: str) -> bool:
    """Whether ``text`` has a line with the subcommand ``name`` and then its whole summary."""
    summary = re.escape(COMMANDS[name].summary)
    return re.search(rf"^\s+{re.escape(name)}\s+{summary}$", text, flags=re.MULTILINE) is not None


def test_commands_cover_every_lightning_subcommand_and_each_extra_target_exists():
    lightning = {name for name, command in COMMANDS.items() if command.target is None}
    assert lightning == set(SelfKDCLI.subcommands())
    for name, target in EXTRA_COMMANDS.items():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name
    assert set(EXTRA_COMMANDS) == set(COMMANDS) - lightning
    width = max(len(name) for name in COMMANDS)
    assert all(2 + width + 2 + len(command.summary) < 80 for command in COMMANDS.values())  # one line on a terminal


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_main_help_lists_every_subcommand_with_its_summary(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([flag])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lightning-skd")
    for name in COMMANDS:
        assert listed(out, name), name
    assert not REST_MARKUP.search(out)


def test_main_without_subcommand_fails_listing_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: a subcommand is required" in err
    for name in COMMANDS:
        assert listed(err, name), name


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fitt", "--config", "x.yaml"], "unknown subcommand 'fitt'"),
        (["--trainer.max_epochs=1"], "a subcommand is required"),
        (["--config", "x.yaml", "compare", "sweep.yaml"], "'compare' takes no options before it"),
    ],
)
def test_main_rejects_a_bad_subcommand_before_importing_lightning(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and listed(err, "compare")


def test_main_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"lightning_skd {lightning_skd.__version__}\n"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_subcommand_help_is_plain_text(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and name in out.splitlines()[0]
    markup = sorted({line.strip() for line in out.splitlines() if REST_MARKUP.search(line)})
    assert not markup, markup


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "--model.help", "lightning_skd.models.ImageClassifier"],
        ["test", "--data.help", "lightning_skd.data.DigitsDataModule"],
    ],
)
def test_class_help_of_a_lightning_subcommand_is_plain_text(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"Help for {argv[1]}={argv[2]}" in out
    markup = sorted({line.strip() for line in out.splitlines() if REST_MARKUP.search(line)})
    assert not markup, markup


def test_top_level_help_imports_neither_torch_nor_lightning():
    code = (
        "import sys\n"
        "from lightning_skd.commands import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'torch', 'pytorch_lightning', 'lightning', 'jsonargparse', 'numpy'}\n"
        "print(sorted({name.split('.')[0] for name in sys.modules} & heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "subcommands:" in result.stdout


def test_python_dash_m_lightning_skd_is_the_command():
    result = subprocess.run(
        [sys.executable, "-m", "lightning_skd", "--help"], capture_output=True, text=True, timeout=120, check=True
    )
    assert listed(result.stdout, "configs")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["fit", "--config", "a.yaml"], "fit"),
        (["-c", "fit", "test"], "test"),  # the config's value is not the subcommand
        (["--config=a.yaml", "--print_config", "validate"], "validate"),
        (["--help"], None),
        ([], None),
    ],
)
def test_first_positional_skips_options_and_the_config_value(argv, expected):
    assert _first_positional(argv) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Default: ``'32-true'``.", "Default: '32-true'."),
        ("``True`` uses the\n``TensorBoardLogger``", "True uses the\nTensorBoardLogger"),
        ("a ``literal that\nwraps``", "a literal that\nwraps"),
        ("see :class:`~lightning_skd.SelfKDCallback`", "see SelfKDCallback"),
        ("see :class:`lightning_skd.SelfKDCallback`", "see lightning_skd.SelfKDCallback"),
        (":py:meth:`fit <pytorch_lightning.Trainer.fit>`", "fit"),
        ("a `subclass\n<https://example.org/x>`_ of", "a subclass (https://example.org/x) of"),
        ("single `quotes` stay", "single `quotes` stay"),
    ],
)
def test_plain_text_removes_rest_markup(text, expected):
    assert plain_text(text) == expected
