from pathlib import Path

import pytest

from lightning_skd.tools import configs
from lightning_skd.tools.configs import CONFIG_DIR, copy_configs, shipped_config, shipped_configs

REPO = Path(__file__).parents[2]


def test_config_dir_is_the_clones_configs_folder_through_the_package_link():
    link = REPO / "lightning_skd" / "configs"
    assert link.is_symlink() and link.resolve() == (REPO / "configs").resolve()
    assert CONFIG_DIR == (REPO / "configs").resolve()


def test_shipped_configs_are_every_yaml_file_of_the_configs_folder():
    expected = sorted(path.relative_to(REPO / "configs").as_posix() for path in (REPO / "configs").rglob("*.yaml"))
    assert shipped_configs() == expected
    assert {"digits/selfkd.yaml", "sweeps/digits.yaml", "digits/demo/baseline.yaml"} <= set(expected)


@pytest.mark.parametrize("name", ["digits/selfkd.yaml", "configs/digits/selfkd.yaml", Path("digits") / "selfkd.yaml"])
def test_shipped_config_accepts_names_with_or_without_the_configs_folder(name):
    assert shipped_config(name) == CONFIG_DIR / "digits" / "selfkd.yaml"


def test_shipped_sweep_resolves_its_method_configs_next_to_it():
    from lightning_skd.compare import Sweep

    sweep = Sweep.from_file(shipped_config("sweeps/digits.yaml"))
    names = ("baseline", "label_smoothing", "selfkd")
    assert [method.config for method in sweep.methods] == [CONFIG_DIR / "digits" / "demo" / f"{n}.yaml" for n in names]


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("digits/selfkd.yml", "Did you mean digits/selfkd.yaml"),
        ("digits", ""),  # a folder, not a config
        ("../pyproject.toml", ""),
        ("/etc/hostname", ""),
        ("", ""),
    ],
)
def test_shipped_config_rejects_what_is_not_a_shipped_config(name, hint):
    with pytest.raises(FileNotFoundError, match=r"`name` must be a config shipped with lightning_skd") as error:
        shipped_config(name)
    assert f"got {name!r}" in str(error.value) and hint in str(error.value)


def test_copy_configs_copies_every_config_and_never_overwrites(tmp_path):
    destination = copy_configs(tmp_path / "mine")
    copied = sorted(path.relative_to(destination).as_posix() for path in destination.rglob("*.yaml"))
    assert copied == shipped_configs()
    assert (destination / "digits" / "selfkd.yaml").read_text() == shipped_config("digits/selfkd.yaml").read_text()
    with pytest.raises(FileExistsError, match=r"`destination` must be a folder that does not exist yet"):
        copy_configs(destination)


def test_main_lists_prints_paths_and_copies(tmp_path, monkeypatch, capsys):
    configs.main([])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"# configs shipped with lightning_skd, in {CONFIG_DIR}" and out[1:] == shipped_configs()
    configs.main(["digits/selfkd.yaml", "sweeps/digits.yaml"])
    assert capsys.readouterr().out.splitlines() == [
        str(shipped_config("digits/selfkd.yaml")),
        str(shipped_config("sweeps/digits.yaml")),
    ]
    monkeypatch.chdir(tmp_path)
    configs.main(["--copy"])
    assert (tmp_path / "configs" / "sweeps" / "digits.yaml").is_file()
    assert capsys.readouterr().out == f"copied {len(shipped_configs())} configs into configs\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["digits/nope.yaml"], "`name` must be a config shipped with lightning_skd"),
        (["--copy", "."], "`destination` must be a folder that does not exist yet"),
        (["digits/selfkd.yaml", "--copy", "x"], "give NAMEs or --copy, not both"),
    ],
)
def test_main_errors_exit_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        configs.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
