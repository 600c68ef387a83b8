"""A small Hub-compatible HTTP server on 127.0.0.1, enough for ``huggingface_hub``'s repo creation and commits.

It speaks the endpoints the real client calls for ``HfApi.create_repo`` + ``HfApi.create_commit``
(``/api/repos/create``,
``/api/validate-yaml``, ``/api/models/<repo>/preupload/<rev>``, ``/api/models/<repo>/commit/<rev>``, the same under
``/api/datasets/`` for dataset repositories, every file uploaded inline), checks the bearer token, records every
request and the files that arrived, and can fail on
purpose: ``server.fail["commit"] = [500, 500]`` answers the next two commits with HTTP 500; ``server.fail_always
["commit"] = 503`` answers every one. Loopback only; the server thread stops when the fixture ends.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from huggingface_hub import constants

USER = "test-user"


@dataclass
class FakeRepo:
    private: bool | None
    repo_type: str = "model"
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)


class FakeHub:
    """The server's state; ``url`` is what HF_ENDPOINT should be set to."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.fail: dict[str, list[int]] = defaultdict(list)  # endpoint kind -> statuses to answer next, in order
        self.fail_always: dict[str, int] = {}
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"hub": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def calls(self, kind: str) -> list[int]:
        """Statuses answered to the requests of one kind (``commit``, ``preupload``, ``create``, ...)."""
        return [status for _, path, status in self.requests if _kind(path) == kind]


def _kind(path: str) -> str:
    if path.startswith("/api/repos/create"):
        return "create"
    match = re.match(r"^/api/(?:models|datasets|spaces)/[^/]+/[^/]+/(preupload|commit)/", path)
    if match:
        return match.group(1)
    if path.startswith("/api/validate-yaml"):
        return "validate-yaml"
    return "other"


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _reply(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status >= 400:
            self.send_header("X-Error-Message", payload.get("error", "error") if isinstance(payload, dict) else "error")
        self.end_headers()
        self.wfile.write(body)
        with self.hub.lock:
            self.hub.requests.append((self.command, self.path, status))

    def do_GET(self) -> None:  # noqa: N802
        self._body()
        self._reply(404, {"error": "not served by the fake hub"})

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        hub, kind = self.hub, _kind(self.path.split("?")[0])
        if self.headers.get("Authorization") != f"Bearer {hub.token}":
            return self._reply(401, {"error": "Invalid credentials in Authorization header"})
        with hub.lock:
            injected = hub.fail[kind].pop(0) if hub.fail[kind] else hub.fail_always.get(kind)
        if injected:
            return self._reply(injected, {"error": f"injected failure ({injected})"})
        if kind == "create":
            request = json.loads(body)
            repo_id = f"{request.get('organization') or USER}/{request['name']}"
            private = {"private": True, "public": False}.get(request.get("visibility"), request.get("private"))
            with hub.lock:
                exists = repo_id in hub.repos
                hub.repos.setdefault(repo_id, FakeRepo(private=private, repo_type=request.get("type") or "model"))
            if exists:
                return self._reply(409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"})
            return self._reply(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})
        if kind == "validate-yaml":
            return self._reply(200, {"errors": [], "warnings": []})
        repo_id = "/".join(self.path.split("/")[3:5])
        if repo_id not in hub.repos:
            return self._reply(404, {"error": f"Repository {repo_id} not found"})
        if kind == "preupload":
            files = json.loads(body)["files"]
            return self._reply(
                200,
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files
                    ]
                },
            )
        if kind == "commit":
            arrived: dict[str, bytes] = {}
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    value = item["value"]
                    assert value.get("encoding") == "base64"
                    arrived[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] != "header":
                    return self._reply(400, {"error": f"the fake hub only takes inline files, got {item['key']}"})
            oid = hashlib.sha1(body).hexdigest()
            with hub.lock:
                hub.repos[repo_id].files.update(arrived)
                hub.repos[repo_id].commits.append(oid)
            return self._reply(
                200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{oid}", "commitOid": oid, "success": True}
            )
        return self._reply(404, {"error": "not served by the fake hub"})


@contextlib.contextmanager
def served_hub(patch: pytest.MonkeyPatch, token: str) -> Iterator[FakeHub]:
    """A FakeHub that huggingface_hub talks to: offline mode off and ``HF_ENDPOINT`` at the server, set through
    ``patch`` (so undone with it). Tokens in the environment are the caller's business."""
    patch.setattr(constants, "HF_HUB_OFFLINE", False)
    patch.setenv("HF_HUB_OFFLINE", "0")
    with FakeHub(token) as server:
        patch.setenv("HF_ENDPOINT", server.url)
        yield server
