"""One error root: every exception class Ladder defines descends from LadderError, the one-line ones from
UserError, which the CLI prints as `ladder: error: ...` with exit status 1 (and nothing else does)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

import pytest

import ladder
from ladder import errors
from ladder.errors import LadderError, UserError

ONE_LINE = {  # the failures a command ends with, in one line
    "ladder.config.ConfigError", "ladder.store.hubdb.StoreError", "ladder.link.tls.TLSMaterialError",
    "ladder.agent.agent.AgentFatal", "ladder.agent.join.JoinFailed", "ladder.agent.command.RequestFailed",
    "ladder.service.ServiceError", "ladder.search.index.IndexFailed",
}


def _classes():
    for module in pkgutil.walk_packages(ladder.__path__, "ladder."):
        if module.name == "ladder.__main__":
            continue  # running it runs the CLI
        loaded = importlib.import_module(module.name)
        for _, cls in inspect.getmembers(loaded, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.name:
                yield f"{module.name}.{cls.__qualname__}", cls


def test_every_exception_ladder_defines_descends_from_ladder_error():
    found = dict(_classes())
    assert len(found) >= 15
    assert [name for name, cls in found.items() if not issubclass(cls, LadderError)] == []


def test_the_one_line_errors_and_their_kinds_are_the_user_errors():
    found = {name: cls for name, cls in _classes() if cls.__module__ != "ladder.errors"}
    one_line = tuple(found[name] for name in ONE_LINE)
    assert {n for n, cls in found.items() if issubclass(cls, UserError)} == {
        n for n, cls in found.items() if issubclass(cls, one_line)}
    assert "ladder.store.hubdb.InviteExpired" in {n for n, cls in found.items() if issubclass(cls, UserError)}
    assert not issubclass(found["ladder.protocol.errors.ProtocolError"], UserError)


def test_the_error_root_imports_nothing_so_every_layer_may_use_it():
    tree = ast.parse(Path(errors.__file__).read_text())
    assert [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))] == []


def _run_cli(monkeypatch, capsys, *args):
    from ladder import cli

    monkeypatch.setattr(sys, "argv", ["ladder", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    return info.value.code, capsys.readouterr().err


def test_the_cli_prints_a_user_error_in_one_line_with_status_1(monkeypatch, capsys, tmp_path):
    code, err = _run_cli(monkeypatch, capsys, "up", "--dir", str(tmp_path))
    assert code == 1
    assert err == (f"ladder: error: {tmp_path} holds no membership: "
                   f"run `ladder join INVITE --dir {tmp_path}` first\n")


def test_the_cli_lets_other_ladder_errors_through_as_bugs(monkeypatch, capsys):
    from ladder import cli
    from ladder.protocol.records import RecordError

    def fail(*_args, **_kwargs):
        raise RecordError("a bug: nobody should have let this reach the CLI")

    monkeypatch.setattr(cli.cli, "main", fail)
    with pytest.raises(RecordError):
        cli.main()
