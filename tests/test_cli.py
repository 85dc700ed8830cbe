"""The command line around the commands: `python -m attribfast`, --version and the help texts."""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys

import attribfast
import pytest
from attribfast import cli
from attribfast.methods import METHODS, Occlusion


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attribfast", *args], capture_output=True, text=True, timeout=120)


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_python_dash_m_runs_the_command_line():
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for command in ("info", "export", "explain", "demo"):
        assert command in result.stdout
    missing = run()
    assert missing.returncode == 2 and "usage: attribfast" in missing.stderr


def test_version_is_the_installed_distributions():
    result = run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"attribfast {importlib.metadata.version('attribfast')}"
    assert attribfast.__version__ == importlib.metadata.version("attribfast")


def test_every_command_and_option_has_help_text():
    parser = cli.build_parser()
    commands = subparsers(parser)
    (choices,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {a.dest: a.help for a in choices._choices_actions}
    assert set(helps) == set(commands)
    missing = [name for name, text in helps.items() if not text]
    for name, sub in commands.items():
        for action in sub._actions:
            if action.help in (None, "", argparse.SUPPRESS):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help text: {missing}"


def test_method_help_lists_the_registry(monkeypatch):
    text = subparsers(cli.build_parser())["explain"].format_help()
    for name in METHODS:
        assert name in text
    assert "window=1" in text and "n_steps=50" in text  # the epilog lists each method's --param keys

    class Fake(Occlusion):
        name = "fake_registered_method"

    monkeypatch.setitem(METHODS, Fake.name, Fake)
    assert Fake.name in subparsers(cli.build_parser())["explain"].format_help()


@pytest.mark.parametrize("command", ["export", "explain", "compare", "demo", "info"])
def test_each_command_help_exits_cleanly(command):
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: attribfast {command}")
