"""``ragmem ask --server``: the question goes to a running server (uvicorn on a free
port, the fakes behind it) and prints what a local ``ragmem ask`` prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import ragmem.assistant
from ragmem.cli import cli
from ragmem.serve.app import create_app
from ragmem.serve.service import Service
from tests.conftest import EchoGenerator, KeywordEmbedder
from tests.serve.conftest import running
from tests.serve.test_api import QUESTION


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch, home: Path) -> CliRunner:
    """The CLI asking in-process with the same fakes the server has."""
    monkeypatch.setenv("RAGMEM_HOME", str(home))
    monkeypatch.setenv("RAGMEM_ANSWERING_MODE", "generate")
    monkeypatch.setattr(ragmem.assistant, "generator_from_config", lambda c: EchoGenerator())
    monkeypatch.setattr(ragmem.assistant, "embedder_from_config", lambda c: KeywordEmbedder())
    monkeypatch.setattr(ragmem.assistant, "require_local", lambda *a: None)
    return CliRunner()


def test_ask_with_server_prints_what_a_local_ask_prints(local: CliRunner,
                                                        service: Service) -> None:
    with running(create_app(service)) as url:
        for flags in ([], ["--no-stream"], ["--json"], ["--json", "--show-context"]):
            here = local.invoke(cli, ["ask", "notes", QUESTION, *flags])
            there = local.invoke(cli, ["ask", "notes", QUESTION, *flags, "--server", url])
            assert here.exit_code == 0 and there.exit_code == 0, there.output
            if "--json" in flags:
                mine, theirs = json.loads(here.stdout), json.loads(there.stdout)
                mine.pop("timings"), theirs.pop("timings")
                assert mine == theirs
            else:
                assert here.stdout == there.stdout
                assert "«" in there.stdout or "[1]" in there.stdout
        env = local.invoke(cli, ["ask", "notes", QUESTION, "--json"], env={"RAGMEM_SERVER": url})
        assert env.exit_code == 0 and json.loads(env.stdout)["citations"]
        r = local.invoke(cli, ["ask", "nope", QUESTION, "--server", url])
        assert r.exit_code == 1 and "answered 404" in r.output and "Traceback" not in r.output
        r = local.invoke(cli, ["ask", "notes", QUESTION, "--server", url, "--generator", "x"])
        assert r.exit_code == 2 and "the server's own" in r.output


def test_no_server_there_is_one_line(local: CliRunner) -> None:
    r = local.invoke(cli, ["ask", "notes", QUESTION, "--server", "http://127.0.0.1:9"])
    assert r.exit_code == 1 and "no ragmem server at http://127.0.0.1:9" in r.output


def test_serve_refuses_another_address_without_a_token(local: CliRunner) -> None:
    r = local.invoke(cli, ["serve", "--host", "0.0.0.0"])
    assert r.exit_code == 1 and "needs a token" in r.output and "Traceback" not in r.output


def test_serve_names_a_missing_index(local: CliRunner) -> None:
    r = local.invoke(cli, ["serve", "--index", "missing"])
    assert r.exit_code == 1 and "ragmem index PATH --index missing" in r.output
