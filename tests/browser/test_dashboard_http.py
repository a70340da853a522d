"""The dashboard as bytes on the wire, and as shipped: no browser needed, so these run everywhere.

What is served (and what never is), the headers that keep the page to itself, the package data that puts
the files in the wheel and in `sam build`, and `switchboard serve` telling the operator where the page is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from switchboard.dashboard import ASSETS, HERE
from switchboard.http.serving import bind
from tests.conftest import ADMIN_KEY

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(["index.html", "README.md", "vendor/chart.js.LICENSE.md", *ASSETS])


class Links(HTMLParser):
    """Every URL the page names, and any inline script or style, which the CSP would block."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        self.urls += [value for name, value in attrs if name in ("src", "href", "action") and value]
        if "style" in named or any(name.startswith("on") for name in named):
            self.inline.append(f"<{tag}> with {[n for n in named if n == 'style' or n.startswith('on')]}")
        if tag == "style":
            self.inline.append("<style>")
        self._in_script = tag == "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline <script>")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def test_the_page_is_served_with_a_strict_policy_and_no_cookie(gateway):
    response = httpx.get(gateway.url + "/dashboard")
    assert response.status_code == 200 and response.headers["content-type"] == "text/html; charset=utf-8"
    policy = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    assert policy == {"default-src": "'none'", "script-src": "'self'", "style-src": "'self'", "img-src": "'self'",
                      "connect-src": "'self'", "base-uri": "'none'", "form-action": "'none'",
                      "frame-ancestors": "'none'"}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in response.headers
    assert response.content == (HERE / "index.html").read_bytes()

    links = Links()
    links.feed(response.text)
    assert links.inline == []
    assert sorted(links.urls) == sorted(f"dashboard/{name}" for name in ASSETS)  # relative: this origin only
    for url in links.urls:
        asset = httpx.get(gateway.url + "/" + url)
        name = url.removeprefix("dashboard/")
        assert asset.status_code == 200 and asset.headers["content-type"] == ASSETS[name]
        assert asset.content == (HERE / name).read_bytes()
        assert asset.headers["content-security-policy"] == response.headers["content-security-policy"]


def test_the_page_labels_its_key_field_and_keeps_it_out_of_the_url():
    page = (HERE / "index.html").read_text()
    assert '<label for="admin-key">Admin key</label>' in page
    assert '<input id="admin-key" name="admin-key" type="password"' in page
    script = (HERE / "dashboard.js").read_text()
    assert "localStorage" not in script and "document.cookie" not in script
    assert 'credentials: "omit"' in script and "sessionStorage.setItem(KEY_STORAGE" in script


@pytest.mark.parametrize("path", ["/dashboard/__init__.py", "/dashboard/../app.py", "/dashboard/%2e%2e/app.py",
                                  "/dashboard/vendor/../__init__.py", "/dashboard/vendor/chart.js.LICENSE.md",
                                  "/dashboard/README.md", "/dashboard//etc/passwd", "/dashboard/index.html/"])
def test_nothing_but_the_listed_assets_is_reachable(gateway, path):
    response = httpx.get(gateway.url + path)
    assert response.status_code == 404, response.text[:200]
    assert response.json()["error"]["code"] == "404"
    assert b"import" not in response.content and b"root:" not in response.content


def test_a_trailing_slash_goes_back_to_the_page(gateway):
    response = httpx.get(gateway.url + "/dashboard/")
    assert response.status_code == 308 and response.headers["location"] == "../dashboard"
    assert httpx.get(gateway.url + "/dashboard/", follow_redirects=True).url.path == "/dashboard"


def test_the_admin_api_the_page_reads_still_wants_an_admin_key(gateway):
    for path in ("/v1/usage", "/v1/calls"):
        assert httpx.get(gateway.url + path).status_code == 401
        assert httpx.get(gateway.url + path, headers={"authorization": f"Bearer {ADMIN_KEY}"}).status_code == 503


def test_the_wheel_ships_the_dashboard(tmp_path):
    """setuptools' build_py, the step that lays out a wheel's contents (package data included), run offline on
    a copy of the tree: the build writes build/ and egg-info beside the sources."""
    source, built_lib = tmp_path / "source", tmp_path / "lib"
    shutil.copytree(ROOT / "handler", source / "handler",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
                            "--build-lib", str(built_lib)], cwd=source, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    for name in SHIPPED:
        assert (built_lib / "switchboard" / "dashboard" / name).read_bytes() == (HERE / name).read_bytes()
    assert (built_lib / "switchboard" / "dashboard" / "__init__.py").exists()


def test_sam_build_ships_the_dashboard(tmp_path):
    """The function's build step exactly as `sam build` runs it (BuildMethod: makefile, CodeUri handler/)."""
    built = subprocess.run(["make", "-s", "-C", str(ROOT / "handler"), "build-GatewayFunction",
                            f"ARTIFACTS_DIR={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    for name in SHIPPED:
        assert (tmp_path / "switchboard" / "dashboard" / name).read_bytes() == (HERE / name).read_bytes()


def test_switchboard_serve_prints_the_dashboard_url(tmp_path):
    port = bind().getsockname()[1]
    env = {**os.environ, "SWITCHBOARD_API_KEYS": "sb-serve-test-key-fake", "SWITCHBOARD_ADMIN_KEYS": ADMIN_KEY,
           "HOME": str(tmp_path)}
    for name in list(env):
        if name.endswith("_API_KEY") or name in ("SWITCHBOARD_TABLE", "SIMULATOR_BASE_URL"):
            env.pop(name)
    server = subprocess.Popen([sys.executable, "-m", "switchboard", "serve", "--port", str(port)], cwd=tmp_path,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = _printed_dashboard_url(server, deadline=time.time() + 60)
        assert url == f"http://127.0.0.1:{port}/dashboard"
        page = _get_when_up(url, deadline=time.time() + 30)
        assert page.status_code == 200 and "Admin key" in page.text
    finally:
        server.terminate()
        server.wait(timeout=20)


def _printed_dashboard_url(server: subprocess.Popen, deadline: float) -> str:
    seen = []
    while time.time() < deadline:
        line = server.stderr.readline()
        if not line and server.poll() is not None:
            break
        seen.append(line)
        if "dashboard on " in line:
            return line.split("dashboard on ", 1)[1].split()[0]
    pytest.fail("switchboard serve never printed the dashboard's URL:\n" + "".join(seen)[-3000:])


def _get_when_up(url: str, deadline: float) -> httpx.Response:
    while True:
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
