"""Secrets: the Hub token (HF_TOKEN) never appears in logs, results files or error messages.

Every CLI run of this suite gets a recognisable fake token in ``HF_TOKEN``, and ``run_cli`` fails
if it is ever printed; the crash and accounting tests also scan the files each command wrote
(builds, variants, benchmark records, Hub export folders). Here the real ``tinyset publish --push``
talks to a hostile local "Hub" (``HF_ENDPOINT``) that answers every request with 401 and echoes
the token it was sent back in the error body and headers, the worst case for an error message
built from the server's reply.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from _hostile import ROOT, SECRET, TINYSET, assert_no_secret, cli_env

pytestmark = pytest.mark.slow


class _EchoingHub(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def _reply(self) -> None:
        auth = self.headers.get("Authorization", "")
        self.seen.append(auth)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"error": f"Invalid credentials in Authorization header: {auth}"})
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Message", f"Invalid token {auth}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = do_PUT = do_HEAD = _reply

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile_hub() -> Iterator[str]:
    _EchoingHub.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_push_error_never_shows_the_token(reference_build: tuple[Path, float], tmp_path: Path,
                                          hostile_hub: str) -> None:
    out, _ = reference_build
    export = tmp_path / "export"
    env = cli_env(HF_ENDPOINT=hostile_hub)
    env.pop("HF_HUB_OFFLINE")
    p = subprocess.run([TINYSET, "publish", str(out), "--repo-id", "tinyset/leak-test",
                        "--export-dir", str(export), "--push", "--shard-mb", "50"],
                       env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    # The token really was sent (so the test can fail) and the Hub echoed it back ...
    assert any(SECRET in auth for auth in _EchoingHub.seen), _EchoingHub.seen
    # ... and the user sees one line without it.
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    assert SECRET not in p.stdout + p.stderr
    last = p.stderr.strip().splitlines()[-1]  # after the export's progress line
    assert last.startswith("error: push to tinyset/leak-test failed") and "***" in last, last
    assert_no_secret(export)
    assert_no_secret(out)


def test_token_not_in_errors_of_bad_invocations(reference_build: tuple[Path, float],
                                                tmp_path: Path) -> None:
    out, _ = reference_build
    for args in (["--repo-id", "not a repo id"],):
        p = subprocess.run([TINYSET, "publish", str(out), *args], env=cli_env(),
                           capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert SECRET not in p.stdout + p.stderr, args
