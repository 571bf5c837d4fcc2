#!/usr/bin/env bash
# Compile and run tools/offsets/probe.c against the real headers of one provisioned CPython.
#
#   probe.sh SERIES            e.g. probe.sh 3.14   (looks the series up in the index)
#   probe.sh --all             every series in the index, each block headed by `# series X.Y`
#   probe.sh --prefix DIR      the headers of an interpreter installed under DIR (e.g. pyenv's
#                              versions/3.7.16: DIR/include/pythonX.Y*), built without
#                              extra defines (-DNDEBUG -DPy_BUILD_CORE)
#
# The index is $PYTHONS_DIR/index.tsv (default ~/.cache/pythons), written by
# tools/pythons/provision. Its include_dir, root and core_defines columns give the headers
# and the defines the interpreter was built with. Always probe with those: Debian builds 3.14+
# with -D_Py_TIER2=3 -D_Py_JIT, which change struct sizes (3.15's PyThreadState grows by 8
# bytes), though none of the offsets printed today. Output: `name value` lines, see probe.c.
# Needs a C compiler ($CC, default gcc).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pythons_dir="${PYTHONS_DIR:-${HOME:-/root}/.cache/pythons}"
index="$pythons_dir/index.tsv"
cc="${CC:-gcc}"

die() { echo "probe.sh: $*" >&2; exit 1; }

usage="usage: probe.sh SERIES | --all | --prefix DIR"
[ $# -ge 1 ] || die "$usage"
command -v "$cc" >/dev/null || die "no C compiler ($cc)"
if [ "$1" != "--prefix" ]; then
    [ $# -eq 1 ] || die "$usage"
    [ -r "$index" ] || die "no index at $index: run tools/pythons/provision"
fi

# One line of the index per series (flavours share their headers).
row_for() {
    awk -F'\t' -v s="$1" '$1 == s && !/^#/ { print; exit }' "$index"
}

probe_one() {
    local series="$1" row root include_dir core_defines out
    row="$(row_for "$series")"
    [ -n "$row" ] || die "series $series is not in $index"
    root="$(cut -f7 <<<"$row")"
    include_dir="$(cut -f8 <<<"$row")"
    core_defines="$(cut -f9 <<<"$row")"
    [ -d "$include_dir" ] || die "include dir $include_dir missing for $series"

    out="$work/probe-$series"
    # shellcheck disable=SC2086 # core_defines is a list of flags
    "$cc" -std=gnu11 -w -I "$include_dir" -I "$root/usr/include" $core_defines \
        -o "$out" "$here/probe.c" \
        || die "compiling the probe against $series headers failed"
    "$out"
}

# An installed interpreter's own headers (pyenv and `make install` prefixes): one
# include/pythonX.Y[m] directory holding Python.h.
probe_prefix() {
    local prefix="$1" include_dir out
    include_dir=""
    for d in "$prefix"/include/python*; do
        [ -r "$d/Python.h" ] || continue
        [ -z "$include_dir" ] || die "more than one include/python* directory under $prefix"
        include_dir="$d"
    done
    [ -n "$include_dir" ] || die "no include/python*/Python.h under $prefix"
    out="$work/probe-prefix"
    "$cc" -std=gnu11 -w -I "$include_dir" -DNDEBUG -DPy_BUILD_CORE \
        -o "$out" "$here/probe.c" \
        || die "compiling the probe against $include_dir failed"
    "$out"
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ "$1" = "--prefix" ]; then
    [ $# -eq 2 ] || die "$usage"
    probe_prefix "$2"
elif [ "$1" = "--all" ]; then
    for series in $(awk -F'\t' '!/^#/ && NF { print $1 }' "$index" | sort -u -V); do
        echo "# series $series"
        probe_one "$series"
    done
else
    probe_one "$1"
fi
