#!/usr/bin/env bash
# The quick start on a fresh machine: install, then run the whole pipeline on its embedded
# defaults (local Kafka broker, embedded ClickHouse) over a simulated system, and show it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tocsin demo "$@"
