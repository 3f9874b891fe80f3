#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what the tests need, lint, run pytest.
# Integration tests start a real Kafka broker on free loopback ports and stop it by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
# the OpenTelemetry Collector and telemetrygen of the end-to-end OTLP test, built once per
# machine into ~/.cache/tocsin/otelcol (5-10 minutes the first time)
bash scripts/build-otelcol.sh
# Alertmanager v0.35.0 for the notify test, built once per machine into
# ~/.cache/tocsin/alertmanager (2-5 minutes the first time)
bash scripts/build-alertmanager.sh
.venv/bin/ruff check pipeline detectors models tests bench
set +e
.venv/bin/python -m pytest -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
    echo "error: no tests were collected" >&2
    exit 1
fi
exit "$status"
