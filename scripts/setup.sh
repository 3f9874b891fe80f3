#!/usr/bin/env bash
# Prepare a fresh machine: Java and Maven for the local Kafka broker (Debian packages,
# only when missing), then a virtualenv in .venv with Tocsin installed (extra: $1).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Java and Maven (Debian packages) for the local Kafka broker"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless maven >/dev/null
    else
        echo "warning: java and mvn are needed for the local Kafka broker; install them" \
             "(e.g. apt-get install default-jre-headless maven) or set" \
             "TOCSIN_KAFKA_BOOTSTRAP_SERVERS to an existing cluster" >&2
    fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
extra=${1:-}
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".${extra:+[$extra]}"
