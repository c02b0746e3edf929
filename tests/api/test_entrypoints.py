"""`python -m app`, `uvicorn app.main:app` and `fastapi run app/main.py` start the same service.

Each is started as a real process in the project root, on a free loopback port, with the same
environment (ARTIFACTS_DIR: the session's fixture artifact; RELOAD_INTERVAL=0), and must become ready;
then /models, /similar-items and /openapi.json answer identically from all three, but for /models'
`loaded_at`, which is by definition each process's own ("when this worker loaded it"). Slow: three servers.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import pytest
from support.artifacts import ApiArtifact
from support.servers import ApiServer, python_m_app, start_api_server

pytestmark = pytest.mark.slow


def uvicorn_app(port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]


def fastapi_run(port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "fastapi", "run", "app/main.py", "--host", "127.0.0.1", "--port", str(port)]


ENTRY_POINTS = {"python -m app": python_m_app, "uvicorn app.main:app": uvicorn_app, "fastapi run app/main.py": fastapi_run}
PATHS = ["/models", "/similar-items?item_id=i3&k=5", "/openapi.json"]
PER_PROCESS = {"/models": ("loaded_at",)}  # fields whose value is the answering process's own


@pytest.fixture(scope="module")
def servers(api_artifact: ApiArtifact, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ApiServer]]:
    """The three entry points, each a real process with one worker on the session's fixture artifact."""
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(
                start_api_server(
                    api_artifact.root, tmp_path_factory.mktemp("entry-point"), workers=1, command=command, RELOAD_INTERVAL="0"
                )
            )
            for name, command in ENTRY_POINTS.items()
        }


def test_every_entry_point_is_ready_on_the_fixture_version(servers, api_artifact):
    for name, server in servers.items():
        assert name.removeprefix("python ") in " ".join(server.proc.args), (name, server.proc.args)  # what was started
        r = server.client.get("/readyz")
        assert r.status_code == 200 and r.json()["artifact_version"] == api_artifact.version, (name, r.text)
        assert server.proc.poll() is None, name


@pytest.mark.parametrize("path", PATHS)
def test_every_entry_point_answers_the_same(servers, path):
    answers = {}
    for name, server in servers.items():
        r = server.client.get(path)
        assert r.status_code == 200, (name, r.status_code, r.text[:500])
        body = r.json()
        for field in PER_PROCESS.get(path, ()):
            assert isinstance(body.pop(field), float), (name, field)
        answers[name] = body
    reference = answers["python -m app"]
    for name, body in answers.items():
        assert body == reference, f"{name} answers {path} differently from python -m app"
