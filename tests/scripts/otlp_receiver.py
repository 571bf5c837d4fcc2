"""Stands in for an OpenTelemetry Collector's OTLP/HTTP profiles receiver in tests/agent.rs:
`POST /v1development/profiles` with an ExportProfilesServiceRequest (protobuf), decoded by
the `opentelemetry-proto` package (tests/requirements-otlp.txt). A body that does not decode
is answered 400; an accepted one gets an empty ExportProfilesServiceResponse.

Each accepted request N is summarised in plain JSON as OUT/NNNN.json, every index resolved
through the request's dictionary, so the Rust test needs no protobuf:
  {"resource_profiles": [{"resource": {attribute: value},
     "profiles": [{"sample_type": [type, unit], "period_type": [type, unit], "period": n,
        "time_unix_nano": n, "duration_nano": n,
        "samples": [{"frames": [function names, leaf first], "files": [...], "lines": [...],
                     "frame_types": [profile.frame.type of each location],
                     "value": values[0], "attributes": {key: value}}]}]}],
   "dictionary_checks": {table: index 0 is the zero value}, "errors": [bad indexes, ...]}
How it answers is chosen per request by --control (see receiver_common.py).

usage: otlp_receiver.py --port-file F --out DIR [--control F] [--port N]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import receiver_common as rc  # noqa: E402

from google.protobuf.message import DecodeError  # noqa: E402
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2  # noqa: E402
from opentelemetry.proto.profiles.v1development import profiles_pb2  # noqa: E402


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("string_value", "int_value", "bool_value", "double_value"):
        return getattr(v, kind)
    return str(getattr(v, kind))


class Resolver(object):
    def __init__(self, dictionary, errors):
        self.d = dictionary
        self.errors = errors

    def at(self, table, index, what):
        items = getattr(self.d, table)
        if 0 <= index < len(items):
            return items[index]
        self.errors.append("%s: index %d out of range (%d entries)" % (what, index, len(items)))
        return None

    def string(self, index):
        s = self.at("string_table", index, "string")
        return s if s is not None else ""

    def attribute(self, index):
        a = self.at("attribute_table", index, "attribute")
        if a is None:
            return None, None
        return self.string(a.key_strindex), any_value(a.value)

    def value_type(self, vt):
        return [self.string(vt.type_strindex), self.string(vt.unit_strindex)]

    def sample(self, s):
        out = {"frames": [], "files": [], "lines": [], "frame_types": [],
               "value": s.values[0] if s.values else None, "attributes": {}}
        stack = self.at("stack_table", s.stack_index, "stack")
        for li in (stack.location_indices if stack is not None else []):
            loc = self.at("location_table", li, "location")
            if loc is None:
                continue
            frame_type = None
            for ai in loc.attribute_indices:
                k, v = self.attribute(ai)
                if k == "profile.frame.type":
                    frame_type = v
            out["frame_types"].append(frame_type)
            line = loc.lines[0] if loc.lines else None
            fn = self.at("function_table", line.function_index, "function") if line else None
            out["frames"].append(self.string(fn.name_strindex) if fn else None)
            out["files"].append(self.string(fn.filename_strindex) if fn else None)
            out["lines"].append(line.line if line else None)
        for ai in s.attribute_indices:
            k, v = self.attribute(ai)
            if k is not None:
                out["attributes"][k] = v
        return out


def zero_checks(d):
    def is_zero(items, cls):
        return len(items) > 0 and items[0] == cls()
    return {
        "mapping_table": is_zero(d.mapping_table, profiles_pb2.Mapping),
        "location_table": is_zero(d.location_table, profiles_pb2.Location),
        "function_table": is_zero(d.function_table, profiles_pb2.Function),
        "link_table": is_zero(d.link_table, profiles_pb2.Link),
        "attribute_table": is_zero(d.attribute_table, profiles_pb2.KeyValueAndUnit),
        "stack_table": is_zero(d.stack_table, profiles_pb2.Stack),
        "string_table": len(d.string_table) > 0 and d.string_table[0] == "",
    }


def summarise(request):
    errors = []
    r = Resolver(request.dictionary, errors)
    resource_profiles = []
    for rp in request.resource_profiles:
        resource = {kv.key: any_value(kv.value) for kv in rp.resource.attributes}
        profiles = []
        for sp in rp.scope_profiles:
            for p in sp.profiles:
                profiles.append({
                    "sample_type": r.value_type(p.sample_type),
                    "period_type": r.value_type(p.period_type),
                    "period": p.period,
                    "time_unix_nano": p.time_unix_nano,
                    "duration_nano": p.duration_nano,
                    "samples": [r.sample(s) for s in p.samples],
                })
        resource_profiles.append({"resource": resource, "profiles": profiles})
    return {"resource_profiles": resource_profiles,
            "dictionary_checks": zero_checks(request.dictionary), "errors": errors}


def main():
    args = rc.parse_args(__doc__.splitlines()[0])
    counter = rc.Counter()

    def handle(handler, body):
        request = profiles_service_pb2.ExportProfilesServiceRequest()
        try:
            request.ParseFromString(body)
        except DecodeError as e:
            return 400, "text/plain", ("cannot decode: %s\n" % e).encode()
        rc.dump_json(args.out, counter.next(), summarise(request))
        reply = profiles_service_pb2.ExportProfilesServiceResponse().SerializeToString()
        return 200, "application/x-protobuf", reply

    rc.serve(args, "/v1development/profiles", handle)


if __name__ == "__main__":
    main()
