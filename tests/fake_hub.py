"""A fake Hugging Face Hub on localhost, answering at the HTTP boundary the way huggingface.co does.

Only the answers the error paths need: model metadata, and file resolution refused for gated repos,
deleted repos and missing revisions (status codes and `X-Error-Code` headers as the real Hub sends them).
Run a scenario in a fresh interpreter so `HF_ENDPOINT` is read at import, as in a user's process.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HubState:
    """Which repos are gated or deleted, which revisions exist (any, unless listed), their files and commits."""

    def __init__(self, gated=(), deleted=(), revisions=None, files=None, shas=None):
        self.gated, self.deleted = set(gated), set(deleted)
        self.revisions = revisions or {}  # repo -> set of revisions that exist
        self.files = files or {}  # repo -> file names at its head
        self.shas = shas or {}  # repo -> head commit


def _handler(state: HubState):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code, body=b"", headers=None):
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _route(self):
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[:2] == ["api", "models"]:
                repo, rest = "/".join(parts[2:4]), parts[4:]
                revision = rest[1] if rest[:1] == ["revision"] else "main"
                return repo, revision, "info"
            if len(parts) >= 4 and parts[2] == "resolve":
                return "/".join(parts[:2]), parts[3], "file"
            return None, None, None

        def do_GET(self):
            repo, revision, kind = self._route()
            if repo is None or repo in state.deleted:
                return self._send(404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            sha = state.shas.get(repo, "0" * 40)
            known = state.revisions.get(repo)
            if known is not None and revision not in known | {sha}:
                return self._send(404, b'{"error":"Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"})
            if kind == "info":
                names = state.files.get(repo, ["model_index.json"])
                info = {"id": repo, "sha": sha, "siblings": [{"rfilename": n} for n in names]}
                info["gated"] = "manual" if repo in state.gated else False
                return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})
            if repo in state.gated:
                code = 403 if self.headers.get("Authorization") else 401
                msg = b'{"error":"Access to model is restricted. You must have access to it and be authenticated."}'
                return self._send(code, msg, {"X-Error-Code": "GatedRepo"})
            return self._send(404, b'{"error":"Entry not found"}', {"X-Error-Code": "EntryNotFound"})

        do_HEAD = do_GET

    return Handler


def serve(state: HubState):
    """Start the fake Hub on a free loopback port; returns (server, base url)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
