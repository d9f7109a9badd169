#!/bin/sh
# Vendor uPlot from its npm release into static/vendor/uplot/ (docs/dashboard.md).
#
#   app/dashboard/vendor.sh            re-fetch the pinned version and check it
#   app/dashboard/vendor.sh 1.6.33     fetch another version and pin it
#   app/dashboard/vendor.sh --check    only check the files against VERSION.json
#
# `npm pack` checks the tarball against the registry's integrity hash; this script
# writes (or compares) the sha256 of each file it copies in VERSION.json.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest="$here/static/vendor/uplot"
files="uPlot.iife.min.js uPlot.min.css LICENSE"

check() {
  for f in $files; do
    want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sha256"][sys.argv[2]])' \
           "$dest/VERSION.json" "$f")
    have=$(sha256sum "$dest/$f" | cut -d' ' -f1)
    [ "$want" = "$have" ] || { echo "MISMATCH $f: $have, VERSION.json says $want" >&2; exit 1; }
    echo "ok $f $have"
  done
}

if [ "${1:-}" = "--check" ]; then check; exit 0; fi
version=${1:-$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' \
               "$dest/VERSION.json")}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "uplot@$version" >/dev/null)
tarball="$work/uplot-$version.tgz"
tar -xzf "$tarball" -C "$work"
mkdir -p "$dest"
cp "$work/package/dist/uPlot.iife.min.js" "$work/package/dist/uPlot.min.css" \
   "$work/package/LICENSE" "$dest/"
integrity=$(cd "$work" && npm view "uplot@$version" dist.integrity)
python3 - "$dest" "$version" "$tarball" "$integrity" $files <<'PY'
import hashlib, json, sys
dest, version, tarball, integrity, *files = sys.argv[1:]
digest = lambda path: hashlib.sha256(open(path, "rb").read()).hexdigest()
record = {"name": "uplot", "version": version,
          "source": f"https://registry.npmjs.org/uplot/-/uplot-{version}.tgz",
          "tarball_sha256": digest(tarball), "tarball_integrity": integrity,
          "license": "MIT",
          "sha256": {f: digest(f"{dest}/{f}") for f in files}}
with open(f"{dest}/VERSION.json", "w") as out:
    json.dump(record, out, indent=2)
    out.write("\n")
PY
check
