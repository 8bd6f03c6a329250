"""What every SDK test needs: the real rill binary on a loopback port, fake
model servers that replay recorded streams in their real wire formats, and
a JWT signer for tests with auth on. Standard library only."""

import base64
import hashlib
import hmac
import http.server
import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
PATIENCE = 30  # seconds: how long a test waits for what should happen

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
# The same tool in Chat Completions' and the Responses API's forms.
CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
RESPONSE_TOOLS = [{"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": False}]


class Rill:
    """`rill serve` on 127.0.0.1 port 0 with `args`; `$RILL_BIN` or
    target/debug/rill. Use as a context manager, or call stop()."""

    def __init__(self, *args, env=None):
        binary = os.environ.get("RILL_BIN") or str(ROOT / "target" / "debug" / "rill")
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "RILL_LOG": "info", "NO_COLOR": "1", **(env or {})},
            text=True,
        )
        self.log = []
        found = queue.Queue()

        def read():
            for line in self.proc.stderr:
                self.log.append(line.rstrip())
                if "listening on http://" in line:
                    found.put(line.split("listening on ", 1)[1].split()[0])
            found.put(None)

        threading.Thread(target=read, daemon=True).start()
        try:
            base = found.get(timeout=PATIENCE)
        except queue.Empty:
            base = None
        if not base:
            self.stop()
            raise RuntimeError("rill did not start:\n" + "\n".join(self.log))
        self.base = base
        self.base_url = base + "/v1"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class FakeModel:
    """A model server on 127.0.0.1 port 0 that answers every POST with a
    recording, one piece at a time, `delay` seconds apart, and keeps the
    JSON bodies it was sent."""

    def __init__(self, content_type, pieces, delay=0.005):
        self.requests = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                size = int(self.headers.get("content-length") or 0)
                fake.requests.append((self.path, json.loads(self.rfile.read(size) or b"null")))
                self.send_response(200)
                self.send_header("content-type", content_type)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                try:
                    for piece in pieces:
                        time.sleep(delay)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]

    @classmethod
    def ollama(cls):
        """Ollama's /api/chat: thinking, then text, then two whole tool calls."""
        text = (DATA / "ollama-chat-tools.ndjson").read_bytes()
        return cls("application/x-ndjson", text.splitlines(keepends=True))

    @classmethod
    def openai(cls):
        """An OpenAI-compatible server: reasoning_content, text, then two tool
        calls whose argument fragments interleave."""
        text = (DATA / "openai-chat-tools.sse").read_bytes()
        return cls("text/event-stream", [e + b"\n\n" for e in text.split(b"\n\n") if e])

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def jwt(secret, claims):
    """An HS256 JWT of `claims`, valid for an hour."""
    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {"exp": int(time.time()) + 3600, **claims}
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"
