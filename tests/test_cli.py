"""The command line around the commands: `python -m attribfast`, --version and the help texts."""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
import threading

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


def test_a_command_that_loaded_torch_ends_with_its_code_and_all_its_output(tmp_path):
    # The export imports torch before it finds the directory empty: the teardown is skipped.
    result = run("export", str(tmp_path / "missing"), "--task", "causal-lm", "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "loading the model" in result.stdout
    assert result.stderr.startswith("attribfast: ExportError: ") and "no config.json" in result.stderr


def test_run_skips_the_teardown_only_after_torch_was_loaded(monkeypatch, capsys):
    ended = []

    class Ended(Exception):
        pass

    def fake_exit(code):
        ended.append(("os._exit", code))
        raise Ended

    import atexit
    import os

    monkeypatch.setattr(os, "_exit", fake_exit)
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: ended.append(("exit handlers", None)))
    monkeypatch.setattr(sys, "argv", ["attribfast", "explain", "/nonexistent-bundle", "--text", "x"])
    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch", object()))
    daemon = threading.Thread(target=lambda: None, daemon=True)  # such as tqdm's monitor
    working = threading.Thread(target=lambda: None)
    threads = [[threading.main_thread(), daemon]]  # (pytest-xdist's worker has threads of its own)
    monkeypatch.setattr(threading, "enumerate", lambda: threads[0])
    with pytest.raises(Ended):
        cli.run()
    assert ended == [("exit handlers", None), ("os._exit", 2)]
    assert capsys.readouterr().err.startswith("attribfast: ")

    threads[0] = [threading.main_thread(), working]
    with pytest.raises(SystemExit) as exit_:
        cli.run()
    assert exit_.value.code == 2 and len(ended) == 2, "another thread runs: the interpreter ends as usual"
    threads[0] = [threading.main_thread()]
    monkeypatch.delitem(sys.modules, "torch")
    with pytest.raises(SystemExit) as exit_:
        cli.run()
    assert exit_.value.code == 2 and len(ended) == 2, "without torch the interpreter ends as usual"
