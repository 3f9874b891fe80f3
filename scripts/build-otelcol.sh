#!/usr/bin/env bash
# Build the OpenTelemetry Collector of tools/otelcol (otlp receiver, batch processor, kafka
# and debug exporters) and telemetrygen into a cache outside the repository, once per
# machine: a binary whose version stamp matches its sources is kept. The end-to-end OTLP
# test runs them. Needs Go (1.26 here) and the Go module proxy; about 5-10 minutes and
# 1 GB of memory on two cores the first time.
#   TOCSIN_CACHE_DIR  cache root (default ~/.cache/tocsin); binaries land in <root>/otelcol/
set -euo pipefail
cd "$(dirname "$0")/.."

TELEMETRYGEN_VERSION=v0.161.0
cache="${TOCSIN_CACHE_DIR:-$HOME/.cache/tocsin}/otelcol"

if ! command -v go >/dev/null; then
    echo "build-otelcol: go is not installed; the end-to-end OTLP test needs it" >&2
    if [ "${CI:-}" = true ]; then exit 1; fi
    exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # one build at a time on this machine

collector_stamp=$( (cat tools/otelcol/go.mod tools/otelcol/go.sum tools/otelcol/main.go; go version) \
    | sha256sum | cut -c1-16)
if [ -x "$cache/otelcol" ] && [ "$(cat "$cache/otelcol.stamp" 2>/dev/null)" = "$collector_stamp" ]; then
    echo "build-otelcol: collector up to date in $cache"
else
    echo "build-otelcol: building the collector into $cache (first time: 5-10 minutes)"
    (cd tools/otelcol && GOFLAGS=-mod=mod go build -trimpath -o "$cache/otelcol.tmp" .)
    mv "$cache/otelcol.tmp" "$cache/otelcol"
    echo "$collector_stamp" > "$cache/otelcol.stamp"
fi

telemetrygen_stamp="$TELEMETRYGEN_VERSION $(go version)"
if [ -x "$cache/telemetrygen" ] \
        && [ "$(cat "$cache/telemetrygen.stamp" 2>/dev/null)" = "$telemetrygen_stamp" ]; then
    echo "build-otelcol: telemetrygen up to date in $cache"
else
    echo "build-otelcol: building telemetrygen $TELEMETRYGEN_VERSION into $cache"
    GOFLAGS= GOBIN="$cache" go install -trimpath \
        "github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@$TELEMETRYGEN_VERSION"
    echo "$telemetrygen_stamp" > "$cache/telemetrygen.stamp"
fi
