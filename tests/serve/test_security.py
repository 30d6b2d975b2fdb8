"""Every refusal the issue lists, each one JSON line with its status: path-like document
ids, a missing or wrong token, another Host, requests a page elsewhere could forge, bad
JSON bodies, oversized and unsupported uploads."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ragmem.config import Config
from ragmem.errors import ConfigError
from ragmem.serve.app import create_app
from ragmem.serve.security import COOKIE, Guard
from ragmem.serve.uploads import safe_name
from tests.conftest import ECHO
from tests.serve.conftest import BASE_URL, fake_service


def refused(r, status: int) -> str:  # type: ignore[no-untyped-def]
    """The error line of a refused request, checked to be one JSON line, no traceback."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert list(r.json()) == ["error"]
    line = r.json()["error"]
    assert "\n" not in line and "Traceback" not in line
    return str(line)


@pytest.mark.parametrize("path", [
    "/api/indexes/notes/documents/../../../etc/passwd",
    "/api/indexes/notes/documents/..%2F..%2Fetc%2Fpasswd",
    "/api/indexes/notes/documents/%2e%2e/%2e%2e/etc/passwd",
    "/api/indexes/notes/documents//etc/passwd",
    "/api/indexes/notes/documents/%2Fetc%2Fpasswd",
    "/api/indexes/notes/documents/space%2F..%2Fcats.txt",
    "/api/indexes/..%2F..%2Fetc/documents/passwd",
    "/api/indexes/%2E%2E/documents",
    "/static/..%2F..%2Fapp.py",
])
def test_a_path_like_id_is_404(client: TestClient, path: str) -> None:
    refused(client.get(path), 404)


def test_a_stored_id_with_a_slash_is_found(client: TestClient) -> None:
    assert client.get("/api/indexes/notes/documents/space/moon.txt").status_code == 200


def test_another_host_is_refused(client: TestClient) -> None:
    r = client.get("/api/indexes", headers={"Host": "evil.example:8765"})
    assert "evil.example" in refused(r, 421)


def test_another_address_than_loopback_needs_a_token() -> None:
    with pytest.raises(ConfigError, match="token"):
        Guard("0.0.0.0", None, 1000)


@pytest.fixture
def token_client(home: Path) -> TestClient:
    config = ECHO.with_overrides({"serve": {"token": "s3cret", "host": "0.0.0.0"}})
    return TestClient(create_app(fake_service(home, config)), base_url="http://10.0.0.5:8765")


def test_the_token_is_checked_on_every_request(token_client: TestClient) -> None:
    for path in ("/", "/api/indexes", "/static/app.js", "/docs", "/openapi.json"):
        assert "token" in refused(token_client.get(path), 401)
    r = token_client.post("/api/ask", json={"question": "Moon?"})
    assert refused(r, 401) and r.headers["www-authenticate"] == "Bearer"
    wrong = {"Authorization": "Bearer nope"}
    assert "wrong token" in refused(token_client.get("/api/indexes", headers=wrong), 401)
    right = {"Authorization": "Bearer s3cret"}
    assert token_client.get("/api/indexes", headers=right).status_code == 200
    assert token_client.post("/api/ask", json={"question": "Moon?"},
                             headers=right).status_code == 200


def test_the_page_keeps_its_token_in_a_cookie(token_client: TestClient) -> None:
    r = token_client.get("/?token=s3cret", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    assert token_client.cookies.get(COOKIE) == "s3cret"
    assert "<title>ragmem</title>" in token_client.get("/").text
    assert token_client.get("/api/indexes").status_code == 200
    token_client.cookies.clear()
    refused(token_client.get("/?token=guess", follow_redirects=False), 401)


def test_a_forgeable_state_change_is_refused(client: TestClient) -> None:
    # A form post (what a page elsewhere can send without a preflight).
    r = client.post("/api/ask", data={"question": "Moon?"})
    assert "application/json" in refused(r, 403)
    r = client.post("/api/indexes/notes/documents", files=[("files", ("a.txt", b"A."))])
    refused(r, 403)
    # Another origin, whatever it sends.
    r = client.post("/api/ask", json={"question": "Moon?"},
                    headers={"Origin": "http://evil.example"})
    assert "evil.example" in refused(r, 403)
    r = client.delete("/api/indexes/notes/documents/cats.txt",
                      headers={"Origin": "http://evil.example"})
    refused(r, 403)
    # The page's own origin may upload.
    r = client.post("/api/indexes/notes/documents", files=[("files", ("a.txt", b"A."))],
                    headers={"Origin": BASE_URL})
    assert r.status_code == 200, r.text


def test_no_cors(client: TestClient) -> None:
    r = client.options("/api/ask", headers={"Origin": "http://evil.example",
                                            "Access-Control-Request-Method": "POST"})
    assert r.status_code >= 400
    assert not any(h.startswith("access-control-") for h in r.headers)
    r = client.post("/api/ask", json={"question": "Moon?"})
    assert not any(h.startswith("access-control-") for h in r.headers)
    assert "default-src 'self'" in r.headers["content-security-policy"]


@pytest.mark.parametrize(("body", "status", "says"), [
    (b"{bad json", 400, "not valid JSON"),
    (b'{"question": ""}', 422, "question"),
    (b'{"index": "notes"}', 422, "question"),
    (b'{"question": "Moon?", "top_k": 0}', 422, "top_k"),
    (b'{"question": "Moon?", "mode": "guess"}', 422, "mode"),
    (b'{"question": "Moon?", "sql": "DROP TABLE windows"}', 422, "sql"),
    (b'["question"]', 422, "body"),
])
def test_a_bad_json_body_is_one_line(client: TestClient, body: bytes, status: int,
                                     says: str) -> None:
    r = client.post("/api/ask", content=body, headers={"Content-Type": "application/json"})
    assert says in refused(r, status)


def test_an_unknown_index_route_or_question_is_one_line(client: TestClient) -> None:
    assert "served" in refused(client.post("/api/ask", json={"question": "Moon?",
                                                             "index": "other"}), 404)
    assert "/docs" in refused(client.get("/api/nothing"), 404)
    assert "empty" in refused(client.post("/api/ask", json={"question": "   "}), 400)
    refused(client.put("/api/ask", json={"question": "Moon?"}), 405)


def test_an_oversized_upload_is_413(home: Path) -> None:
    config = ECHO.with_overrides({"serve": {"max_upload_bytes": 1000}})
    client = TestClient(create_app(fake_service(home, config)), base_url=BASE_URL)
    r = client.post("/api/indexes/notes/documents", files=[("files", ("big.txt", b"x" * 5000))],
                    headers={"Origin": BASE_URL})
    assert "1,000-byte limit" in refused(r, 413)
    assert not (home / "notes/uploads/big.txt").exists()
    r = client.post("/api/ask", content=b'{"question": "' + b"x" * 1_100_000 + b'"}',
                    headers={"Content-Type": "application/json"})
    refused(r, 413)


def test_only_the_formats_ragmem_reads_are_taken(client: TestClient, home: Path) -> None:
    r = client.post("/api/indexes/notes/documents", headers={"Origin": BASE_URL},
                    files=[("files", ("ok.txt", b"Fine.")), ("files", ("run.sh", b"rm -rf /"))])
    assert ".txt" in refused(r, 415)
    assert not (home / "notes/uploads").exists()  # nothing saved when one is refused
    refused(client.post("/api/indexes/notes/documents", headers={"Origin": BASE_URL},
                        data={"x": "1"}), 400)


@pytest.mark.parametrize(("given", "kept"), [
    ("../../etc/passwd.txt", "passwd.txt"),
    ("C:\\Users\\me\\notes.md", "notes.md"),
    ("/abs/path/a.PDF", "a.PDF"),
    (".hidden.txt", "hidden.txt"),
    ("semi;colon `rm` $(x).txt", "semi_colon _rm_ __x_.txt"),
    ("a..b..txt", "a.b.txt"),
])
def test_upload_names_are_sanitised(given: str, kept: str) -> None:
    assert safe_name(given) == kept


@pytest.mark.parametrize("given", ["", "..", "/", "noext", "x.exe", "x.txt.sh"])
def test_unusable_names_are_refused(given: str) -> None:
    with pytest.raises(Exception, match="unsupported|nothing usable"):
        safe_name(given)


def test_a_serve_section_comes_from_the_environment() -> None:
    config = Config().with_env({"RAGMEM_SERVE_TOKEN": "t", "RAGMEM_SERVE_MAX_ASKS": "3"})
    assert (config.serve.token, config.serve.max_asks) == ("t", 3)
