"""`make lab` starts the course where a plain `jupyter lab` stops: as root and with no display."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from lab import NOTEBOOKS, lab_arguments  # noqa: E402

LAB = NOTEBOOKS.parent / "tools" / "lab.py"


def test_root_gets_allow_root_and_no_display_gets_no_browser():
    arguments = lab_arguments(["--port=9999"], euid=0, environ={}, platform="linux")
    assert arguments == ["lab", f"--notebook-dir={NOTEBOOKS}", "--allow-root", "--no-browser", "--port=9999"]


def test_a_user_with_a_display_gets_neither_flag():
    for environ in ({"DISPLAY": ":0"}, {"WAYLAND_DISPLAY": "wayland-0"}):
        assert lab_arguments([], euid=1000, environ=environ, platform="linux") == \
            ["lab", f"--notebook-dir={NOTEBOOKS}"]
    assert lab_arguments([], euid=501, environ={}, platform="darwin") == ["lab", f"--notebook-dir={NOTEBOOKS}"]


def free_loopback_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url, token):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, json.load(response)


def test_the_lab_launcher_serves_the_notebooks_here(tmp_path):
    """Starts the real server the way `make lab` does (as whoever runs the tests, root in CI), with no display."""
    port, token = free_loopback_port(), "course-test-token"
    environ = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    environ.update(JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    server = subprocess.Popen(
        [sys.executable, str(LAB), "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}"],
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, answer = time.monotonic() + 90, None
        while answer is None and time.monotonic() < deadline and server.poll() is None:
            try:
                answer = get_json(f"http://127.0.0.1:{port}/api/contents", token)
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert server.poll() is None, f"jupyter lab exited with {server.returncode}:\n{server.stdout.read()}"
        assert answer is not None, "jupyter lab did not answer within 90 s"
        status, listing = answer
        names = {item["name"] for item in listing["content"]}
        assert status == 200 and "01_matrix_rank.ipynb" in names, names
        with pytest.raises(urllib.error.HTTPError) as refused:
            get_json(f"http://127.0.0.1:{port}/api/contents", "wrong-token")
        assert refused.value.code == 403
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert "No display here" in server.stdout.read()

