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

# the web console's browser tests drive Debian's Chromium through chromedriver (dev only)
if [ "${1:-}" = dev ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
    as_root=""
    can_install=false
    if [ "$(id -u)" = 0 ]; then
        can_install=true
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        as_root="sudo -n"
        can_install=true
    fi
    if $can_install && command -v apt-get >/dev/null; then
        echo "installing Chromium and ChromeDriver (Debian packages) for the console's browser tests"
        $as_root apt-get update -qq
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            chromium chromium-driver >/dev/null
    else
        echo "warning: the console's browser tests need /usr/bin/chromium and" \
             "/usr/bin/chromedriver: install the Debian packages chromium and" \
             "chromium-driver as root (those tests fail until then)" >&2
    fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
extra=${1:-}
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".${extra:+[$extra]}"
