"""Stands in for a Grafana Pyroscope server in tests/agent.rs: `POST /ingest` with the
query Pyroscope reads (name=APP{labels}, from, until, format, sampleRate, ...) and the pprof
as the `profile` part of a multipart/form-data body, as Pyroscope's SDKs upload it.

Each accepted upload N is saved as OUT/NNNN.pb.gz (the part's bytes, for `go tool pprof`)
and then OUT/NNNN.json: {"query": {...}, "app": APP, "labels": {...}, "headers":
{"Content-Type", "X-Scope-OrgID", "Authorization"}, "bytes": N}. A body without a
`profile` part is answered 400. How it answers is chosen per request by --control (see
receiver_common.py).

usage: pyroscope_receiver.py --port-file F --out DIR [--control F] [--port N]
"""
import os
import sys
from urllib.parse import parse_qs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import receiver_common as rc  # noqa: E402


def multipart_parts(content_type, body):
    """{name: bytes} of a multipart/form-data body."""
    boundary = None
    for item in content_type.split(";"):
        item = item.strip()
        if item.startswith("boundary="):
            boundary = item[len("boundary="):].strip('"')
    if not boundary:
        return {}
    delimiter = b"--" + boundary.encode()
    parts = {}
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if data.endswith(b"\r\n"):
            data = data[:-2]
        name = None
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                for field in line.split(";"):
                    field = field.strip()
                    if field.startswith("name="):
                        name = field[len("name="):].strip('"')
        if name is not None:
            parts[name] = data
    return parts


def parse_name(name):
    """'app{k=v,k2=v2}' -> ('app', {'k': 'v', 'k2': 'v2'})."""
    if "{" not in name or not name.endswith("}"):
        return name, {}
    app, _, rest = name.partition("{")
    labels = {}
    for pair in rest[:-1].split(","):
        if "=" in pair:
            k, _, v = pair.partition("=")
            labels[k] = v
    return app, labels


def main():
    args = rc.parse_args(__doc__.splitlines()[0])
    counter = rc.Counter()

    def handle(handler, body):
        query = {k: v[0] for k, v in parse_qs(handler.path.partition("?")[2]).items()}
        parts = multipart_parts(handler.headers.get("Content-Type", ""), body)
        if "profile" not in parts:
            return 400, "text/plain", b"no profile part\n"
        stem = counter.next()
        rc.write_atomically(os.path.join(args.out, stem + ".pb.gz"), parts["profile"])
        app, labels = parse_name(query.get("name", ""))
        headers = {k: handler.headers.get(k) for k in ("Content-Type", "X-Scope-OrgID", "Authorization")}
        rc.dump_json(args.out, stem, {"query": query, "app": app, "labels": labels,
                                      "headers": headers, "bytes": len(parts["profile"])})
        return 200, "text/plain", b""

    rc.serve(args, "/ingest", handle)


if __name__ == "__main__":
    main()
