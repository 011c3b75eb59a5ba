#!/usr/bin/env bash
# Installs what the engine and its tests need on a Debian machine: system packages, then a virtualenv in .venv.
# Idempotent: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in sipp:sip-tester debootstrap:debootstrap espeak-ng:espeak-ng sox:sox ffmpeg:ffmpeg chromium:chromium; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing system packages: ${need[*]}; run as root or install them with apt-get" >&2
        exit 1
    fi
    echo "setup: installing ${need[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,bench]'

# The pages' chart library (Chart.js) from the npm registry, pinned to a version and its integrity hash, copied
# into callcenter/web/static/vendor/ (git-ignored) so that the engine serves it: no page fetches anything from
# elsewhere at run time. `npm pack` when npm is there, else the same registry tarball by URL; a failure only
# leaves the charts off (the pages show tables instead).
CHART_VERSION=4.6.1
CHART_INTEGRITY="sha512-hJyniucsFmq//EvXYvJ6c6mahPoI3kaxdjVH8awTaJ/fDNWeSqqqArixMJWkWNN6fcYvPU3HneSANFNYtRi61g=="
vendor=callcenter/web/static/vendor
if [ "$(cat "$vendor/chart.js.version" 2>/dev/null)" != "$CHART_VERSION" ] || [ ! -s "$vendor/chart.umd.min.js" ]; then
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/callcenter/npm"
    tarball="$cache/chart.js-$CHART_VERSION.tgz"
    mkdir -p "$cache"
    if [ ! -s "$tarball" ] && command -v npm >/dev/null 2>&1; then
        (cd "$cache" && npm pack --silent "chart.js@$CHART_VERSION" >/dev/null 2>&1) || rm -f "$tarball"
    fi
    if [ ! -s "$tarball" ]; then
        python3 - "$tarball" "https://registry.npmjs.org/chart.js/-/chart.js-$CHART_VERSION.tgz" <<'PY' || rm -f "$tarball"
import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[2], timeout=60) as response, open(sys.argv[1], "wb") as out:
    shutil.copyfileobj(response, out)
PY
    fi
    got=""
    if [ -s "$tarball" ]; then
        got="sha512-$(python3 -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$tarball")"
    fi
    if [ -n "$got" ] && [ "$got" = "$CHART_INTEGRITY" ]; then
        unpack=$(mktemp -d)
        tar -xzf "$tarball" -C "$unpack" package/dist/chart.umd.min.js package/LICENSE.md
        cp "$unpack/package/dist/chart.umd.min.js" "$vendor/chart.umd.min.js"
        cp "$unpack/package/LICENSE.md" "$vendor/chart.js-LICENSE.md"
        echo "$CHART_VERSION" > "$vendor/chart.js.version"
        rm -rf "$unpack"
        echo "setup: vendored chart.js $CHART_VERSION into $vendor"
    else
        if [ -s "$tarball" ]; then
            echo "setup: the chart.js tarball does not match its pinned hash; discarded" >&2
            rm -f "$tarball"
        fi
        echo "setup: chart.js could not be fetched; the pages show tables instead of charts" >&2
    fi
fi
echo "setup: ready (.venv)"
