"""What the test receivers share: a threading HTTP server on 127.0.0.1 whose behaviour a
control file chooses per request (ok, 500, 400, hang, close), numbered outputs written
atomically, and a request log. Used by pyroscope_receiver.py and otlp_receiver.py, which
stand in for a Pyroscope server and an OpenTelemetry Collector in tests/agent.rs."""
import argparse
import http.server
import json
import os
import threading
import time


def parse_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port-file", required=True, help="where to write the port, once listening")
    p.add_argument("--out", required=True, help="directory for what is received")
    p.add_argument("--control", help="file naming the behaviour: ok (default), 500, 400, hang, close")
    p.add_argument("--port", type=int, default=0, help="port to listen on (0: any free one)")
    return p.parse_args()


def write_atomically(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


class Counter(object):
    def __init__(self):
        self.lock = threading.Lock()
        self.n = 0

    def next(self):
        with self.lock:
            self.n += 1
            return "%04d" % self.n


def behaviour(control):
    if not control:
        return "ok"
    try:
        with open(control) as f:
            text = f.read().strip()
    except OSError:
        return "ok"
    return text or "ok"


def serve(args, path, handle_ok):
    """Answer POST `path`: `handle_ok(handler, body)` returns (status, content_type, body)."""
    os.makedirs(args.out, exist_ok=True)
    log_lock = threading.Lock()

    def log(what, request_path):
        with log_lock:
            with open(os.path.join(args.out, "requests.log"), "a") as f:
                f.write("%s %s\n" % (what, request_path))

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            what = behaviour(args.control)
            log(what, self.path)
            if self.path.split("?")[0] != path:
                return self.answer(404, "text/plain", b"not found\n")
            if what == "500":
                return self.answer(500, "text/plain", b"internal error (test)\n")
            if what == "400":
                return self.answer(400, "text/plain", b"bad request (test)\n")
            if what == "hang":
                time.sleep(60)
                return self.answer(503, "text/plain", b"too late\n")
            if what == "close":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            status, content_type, reply = handle_ok(self, body)
            return self.answer(status, content_type, reply)

        def answer(self, status, content_type, body):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    write_atomically(args.port_file, str(server.server_address[1]).encode())
    server.serve_forever()


def dump_json(out, stem, value):
    write_atomically(os.path.join(out, stem + ".json"), json.dumps(value, indent=1).encode())
