"""The console scripts as installed (settings.ini `console_scripts`, run through pip's wrappers): for every command
an unknown option is a usage error (status 2, `usage:` on stderr), an error of the library is one `error: ...`
line on stderr with status 1 and no traceback, and `--help` exits with 0. Every entry point is in
`feature_extraction.cli`, the only module that uses argparse. The `-c`/`-o` config options. nbs/18_cli.ipynb
explains the commands."""
import argparse
import configparser
import contextlib
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from feature_extraction.cli import add_options, config_from_arguments, fe_index
from feature_extraction.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("fe_train", "fe_eval", "fe_export", "fe_extract", "fe_index", "fe_search", "fe_serve", "fe_demo")

# per command: arguments that parse but that the library refuses, and what stderr must then say
LIBRARY_ERRORS = {
    "fe_train": (["-c", "/nope.yaml"], "error: config file not found: /nope.yaml"),
    "fe_eval": (["-c", "/nope.yaml"], "error: config file not found: /nope.yaml"),
    "fe_export": (["-c", "/nope.yaml"], "error: config file not found: /nope.yaml"),
    "fe_extract": (["{tmp}/model", "/nope/a.jpg", "-o", "{tmp}/out"], "error: image file not found: /nope/a.jpg"),
    "fe_index": (["info", "/nope"], "error: /nope is not a gallery (no CURRENT file)"),
    "fe_search": (["{tmp}/model", "/nope/index", "/nope/image.jpg"], "error: model folder not found"),
    "fe_serve": (["{tmp}/model", "/nope/index"], "error: model folder not found"),
    "fe_demo": (["--output", "{tmp}/demo", "-o", "Global.epochs=-1"], "Global.epochs"),
}


def run(command: str, *argv, timeout: int = 300) -> subprocess.CompletedProcess:
    "The installed console script `command` run on `argv`, from a temporary folder."
    exe = shutil.which(command)
    assert exe, f"{command} is not installed: pip install -e ."
    return subprocess.run([exe, *map(str, argv)], capture_output=True, text=True, timeout=timeout, cwd="/tmp")


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_option_is_a_usage_error(command):
    done = run(command, "--no-such-flag")
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"usage: {command}" in done.stderr and f"{command}: error:" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_library_error_is_one_line_and_status_1(command, tmp_path):
    argv, message = LIBRARY_ERRORS[command]
    done = run(command, *[a.format(tmp=tmp_path) for a in argv])
    assert done.returncode == 1, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_help_exits_0(command):
    done = run(command, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"usage: {command} [-h]"), done.stdout


@pytest.mark.parametrize("subcommand", ["build", "add", "remove", "info", "calibrate"])
def test_index_subcommands_help(subcommand):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as done:
        fe_index([subcommand, "--help"])
    assert done.value.code == 0
    assert out.getvalue().startswith(f"usage: fe_index {subcommand} [-h]")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as done:
        fe_index([subcommand, "gallery", *(["--model", "m"] if subcommand == "calibrate" else []), "--no-such-flag"])
    assert done.value.code == 2 and "unrecognized arguments: --no-such-flag" in err.getvalue()


def test_console_scripts_are_the_cli_functions():
    settings = configparser.ConfigParser()
    settings.read(REPO / "settings.ini")
    entries = dict(entry.split("=") for entry in settings["DEFAULT"]["console_scripts"].split())
    assert entries == {command: f"feature_extraction.cli:{command}" for command in COMMANDS}
    setup = (REPO / "setup.py").read_text()
    assert '"console_scripts": cfg.get("console_scripts", "").split()' in setup  # setup.py installs those
    for command in COMMANDS:  # and the installed wrappers are up to date
        assert f"from feature_extraction.cli import {command}" in Path(shutil.which(command)).read_text()


def test_only_cli_imports_argparse():
    modules = sorted((REPO / "feature_extraction").glob("*.py"))
    users = [m.name for m in modules if re.search(r"^\s*(import argparse|from argparse\b)", m.read_text(), re.M)]
    assert users == ["cli.py"]


def test_config_arguments(shared):
    reference = shared / "reference/paddleclas/GeneralRecognitionV2_PPLCNetV2_base.yaml"
    parser = add_options(argparse.ArgumentParser(prog="fe_train"), "config", "overrides")
    args = parser.parse_args(["-c", str(reference), "-o", "Global.epochs=2", "Global.device=cpu",
                              "--override", "Global.seed=1", "-o", "DataLoader.Train.sampler.batch_size=8"])
    assert args.overrides == ["Global.epochs=2", "Global.device=cpu", "Global.seed=1",
                              "DataLoader.Train.sampler.batch_size=8"]
    cfg = config_from_arguments(args)
    assert (cfg["Global"]["epochs"], cfg["Global"]["device"], cfg["Global"]["seed"]) == (2, "cpu", 1)
    assert cfg["DataLoader"]["Train"]["sampler"]["batch_size"] == 8
    assert parser.parse_args(["--config", "x.yaml"]).overrides == []
    assert parser.parse_args(["-c", "x.yaml"]).overrides == []  # the default list is not shared between parses
    with pytest.raises(SystemExit):
        parser.parse_args([])  # -c is required
    with pytest.raises(SystemExit):
        parser.parse_args(["-c", "x.yaml", "-o"])  # -o needs a value
    bad = parser.parse_args(["-c", str(reference), "-o", "Global.epochs=zero"])
    with pytest.raises(ConfigError, match=r"Global.epochs: must be an integer >= 1, got 'zero' \(str\) "
                                          r"\(set by -o Global.epochs=zero\)"):
        config_from_arguments(bad)
