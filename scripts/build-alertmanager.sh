#!/usr/bin/env bash
# Build Prometheus Alertmanager (github.com/prometheus/alertmanager, a pinned version) from
# its Go module into a cache outside the repository, once per machine: a binary whose stamp
# (version + Go version) matches is kept. The notify integration test runs it.
# The module as published lacks the web UI's compiled assets (ui/app/dist, built by npm in
# Alertmanager's release process), which its ui package embeds; the source is copied out of
# the module cache and given a one-page placeholder UI, so the API (all Tocsin uses) is the
# release's own. Needs Go (1.26 here) and the Go module proxy; 2-5 minutes the first time.
#   TOCSIN_CACHE_DIR  cache root (default ~/.cache/tocsin); the binary lands in
#                     <root>/alertmanager/alertmanager
set -euo pipefail

ALERTMANAGER_VERSION=v0.35.0
cache="${TOCSIN_CACHE_DIR:-$HOME/.cache/tocsin}/alertmanager"

if ! command -v go >/dev/null; then
    echo "build-alertmanager: go is not installed; the notify integration test needs it" >&2
    exit 1
fi
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # one build at a time on this machine

stamp="$ALERTMANAGER_VERSION $(go version)"
if [ -x "$cache/alertmanager" ] && [ "$(cat "$cache/alertmanager.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "build-alertmanager: alertmanager $ALERTMANAGER_VERSION up to date in $cache"
    exit 0
fi
echo "build-alertmanager: building alertmanager $ALERTMANAGER_VERSION into $cache"
module_dir=$(GOFLAGS=-mod=mod go mod download -json \
    "github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ ! -f "$module_dir/go.mod" ]; then
    echo "build-alertmanager: go mod download gave no module directory for" \
        "github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION" >&2
    exit 1
fi
src="$cache/src-$ALERTMANAGER_VERSION"
rm -rf "$src"
cp -R "$module_dir" "$src"
chmod -R u+w "$src"
for ui in elm mantine; do
    mkdir -p "$src/ui/app/dist/$ui"
    printf '<!doctype html><title>Alertmanager</title><p>The web UI is not built in this %s\n' \
        "copy (Tocsin's test build); the API is at /api/v2/." > "$src/ui/app/dist/$ui/index.html"
done
(cd "$src" && GOFLAGS="-mod=mod -buildvcs=false" go build -trimpath \
    -ldflags "-X github.com/prometheus/common/version.Version=${ALERTMANAGER_VERSION#v}" \
    -o "$cache/alertmanager.tmp" ./cmd/alertmanager)
mv "$cache/alertmanager.tmp" "$cache/alertmanager"
rm -rf "$src"
echo "$stamp" > "$cache/alertmanager.stamp"
"$cache/alertmanager" --version | head -1
