"""Test servers, each run in its own process: moto's S3 server, and a proxy in front of it.

Out of process on purpose: deltalake's ``DeltaTable.history()`` holds the GIL
while it reads the store, so a server thread in the test process would
deadlock with it (as it would starve any Python thread of a real driver).

Run ``python servers.py moto`` or ``python servers.py proxy HOST:PORT [--strip] LOGFILE``.
Each binds a free port on 127.0.0.1, prints it on the first line of stdout once it
accepts connections, and serves until killed. The proxy forwards every request
to HOST:PORT and appends ``[method, path, If-None-Match, status]`` as a JSON line
to LOGFILE before it answers; with ``--strip`` it drops ``If-None-Match`` and
``If-Match``: a store that ignores conditional puts, for real.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP = {"transfer-encoding", "content-length", "connection", "keep-alive"}


def serve_moto() -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    threading.Event().wait()


def serve_proxy(upstream: str, strip: bool, logfile: str) -> None:
    host, port = upstream.rsplit(":", 1)
    lock = threading.Lock()
    log = open(logfile, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return body
                    body += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _forward(self) -> None:
            body = self._body()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            if strip:
                headers = {k: v for k, v in headers.items() if k.lower() not in ("if-none-match", "if-match")}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            with lock:
                log.write(json.dumps([self.command, self.path, self.headers.get("If-None-Match"), resp.status]) + "\n")
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP | {"server", "date"}:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "moto":
        serve_moto()
    else:
        args = sys.argv[2:]
        serve_proxy(args[0], "--strip" in args, args[-1])
