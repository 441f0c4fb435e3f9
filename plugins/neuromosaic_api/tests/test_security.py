"""Every protected route refuses bad tokens, and no path trick reaches a file outside the run directory.

The routes are enumerated from ``app.routes``, so a route added later is covered without editing
this file: it must either be in the app's public list or refuse every bad token.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from neuromosaic_api.app import PUBLIC_PATHS
from neuromosaic_api.files import inside
from neuromosaic_api.testing import EXPERIMENT, READ, LiveServer, bad_tokens, bearer

#: A value for each path parameter, so each route is reached with a well-formed request.
PARAMS = {"name": EXPERIMENT, "number": "1", "path": "history.png"}


@pytest.fixture
def client(make_client):
    """Rate limiting off: these tests send hundreds of requests from one address on purpose."""
    return make_client(rate=0)


def _protected(app) -> list[tuple[str, str]]:
    routes = []
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path not in PUBLIC_PATHS:
            url = re.sub(r"{(\w+)(?::\w+)?}", lambda m: PARAMS[m.group(1)], route.path)
            routes.extend((method, url) for method in sorted(route.methods))
    return routes


def test_the_public_routes_are_exactly_health_and_the_dashboard(client):
    public = {r.path for r in client.app.routes if isinstance(r, APIRoute) and r.path in PUBLIC_PATHS}
    assert public == {"/health", "/"}
    assert len(_protected(client.app)) >= 15  # the enumeration found the API


def test_every_protected_route_refuses_a_missing_or_malformed_header(client):
    for method, url in _protected(client.app):
        for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "},
                        {"Authorization": "Bearer not.a.jwt"}):
            response = client.request(method, url, headers=headers)
            assert response.status_code == 401, (method, url, headers, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("kind", sorted(bad_tokens()))
def test_every_protected_route_refuses_a_bad_token(client, kind):
    headers = bearer(bad_tokens()[kind])
    for method, url in _protected(client.app):
        response = client.request(method, url, headers=headers)
        assert response.status_code == 401, (kind, method, url, response.text)
    if kind == "expired":
        assert response.json()["detail"] == "the token has expired; issue a new one with: neuromosaic-api token"


def test_every_write_route_refuses_a_read_token_with_403_and_accepts_no_less(client):
    writes = [(m, u) for m, u in _protected(client.app) if m != "GET"]
    assert {u for _, u in writes} == {"/api/experiments", f"/api/experiments/{EXPERIMENT}/start",
                                      f"/api/experiments/{EXPERIMENT}/stop"}
    for method, url in writes:
        response = client.request(method, url, headers=READ, json={"overrides": []})
        assert response.status_code == 403, (method, url)
        assert response.json()["detail"] == "this token's scope is 'read'; this needs 'write'"


# -- files -----------------------------------------------------------------------------------


@pytest.fixture
def run_tree(tmp_path: Path) -> Path:
    """A run directory with one plot, a secret beside the runs root, and symlinks pointing out."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    plots = tmp_path / "runs" / EXPERIMENT / "plots"
    plots.mkdir(parents=True)
    (plots / "history.png").write_bytes(b"png")
    (plots / "link.png").symlink_to(secret)
    (plots / "dir-link").symlink_to(tmp_path)
    (tmp_path / "runs" / EXPERIMENT / "report.html").write_text("report")
    return tmp_path


TRICKS = [
    "../report.html",                      # out of plots/ into the run directory (not a plot)
    "../../../secret.txt",
    "..%2F..%2F..%2Fsecret.txt",           # encoded slashes
    "%2E%2E/%2E%2E/%2E%2E/secret.txt",     # encoded dots
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
    "..%5C..%5C..%5Csecret.txt",           # backslashes
    "%2Fetc%2Fpasswd",                     # an absolute path
    "//etc/passwd",
    "link.png",                            # a symlink to the secret
    "dir-link/secret.txt",                 # through a symlinked directory
    "history.png%00.txt",                  # a NUL byte
]


@pytest.fixture
def raw_get(client, run_tree):
    """GET a path exactly as written, through a real uvicorn on loopback: an HTTP client library
    would collapse ``..`` segments before sending, and the test would prove nothing."""
    import http.client
    import json

    with LiveServer(client.app) as server:
        def get(path: str) -> tuple[int, str]:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                connection.request("GET", path, headers=READ)
                response = connection.getresponse()
                body = response.read().decode("utf-8", "replace")
            finally:
                connection.close()
            try:
                return response.status, json.loads(body).get("detail", body)
            except ValueError:
                return response.status, body

        yield get


@pytest.mark.parametrize("trick", TRICKS)
def test_path_tricks_in_a_plot_name_get_404(raw_get, trick):
    status, detail = raw_get(f"/api/experiments/{EXPERIMENT}/plots/{trick}")
    assert status == 404, detail
    assert detail.startswith("no plot "), detail  # refused by the file check, not by the router
    assert "TOP SECRET" not in detail and "root:" not in detail


@pytest.mark.parametrize("name", ["..", "%2E%2E", "..%2Fexp", ".hidden", "exp%2F..%2F.."])
def test_path_tricks_in_an_experiment_name_get_404(raw_get, name):
    for url in (f"/api/experiments/{name}/report", f"/api/experiments/{name}/plots/history.png",
                f"/api/experiments/{name}/plots/report.html"):
        status, detail = raw_get(url)
        assert status == 404 and "report" not in detail.lower().replace("no experiment", ""), (url, detail)


def test_the_plot_itself_is_served_and_symlinks_are_left_out_of_the_listing(client, run_tree):
    assert client.get(f"/api/experiments/{EXPERIMENT}/plots/history.png", headers=READ).content == b"png"
    assert client.get(f"/api/experiments/{EXPERIMENT}/plots", headers=READ).json() == ["history.png"]


def test_inside_resolves_before_it_checks(tmp_path):
    base = tmp_path / "base"
    (base / "sub").mkdir(parents=True)
    (base / "sub" / "f.txt").write_text("x")
    (tmp_path / "out.txt").write_text("y")
    (base / "loop").symlink_to(base / "loop")
    assert inside(base, "sub/f.txt") == (base / "sub" / "f.txt").resolve()
    assert inside(base, "sub/../sub/f.txt") == (base / "sub" / "f.txt").resolve()
    for bad in ("../out.txt", str(tmp_path / "out.txt"), "sub", "", "loop", "sub/f.txt\x00"):
        assert inside(base, bad) is None, bad
