"""The Java runtime the broker needs: found on ``JAVA_HOME`` or ``PATH``, version checked."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from pipeline.errors import BrokerError
from pipeline.kafka.tools import run_tool

MIN_JAVA = 17

_JAVA_MISSING = (
    f"Java is not installed: the local Kafka broker needs a Java {MIN_JAVA}+ runtime "
    "(java on PATH, or JAVA_HOME set), e.g. `apt-get install openjdk-17-jre-headless`; "
    "or use docker compose or an existing Kafka cluster"
)


def find_java() -> str:
    """``$JAVA_HOME/bin/java`` if executable, else ``java`` on PATH; BrokerError if neither."""
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home, "bin", "java") if home else None
    if candidate is not None and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise BrokerError(_JAVA_MISSING)
    return found


def check_java_version(java: str) -> None:
    """Refuse a ``java`` older than :data:`MIN_JAVA` (an unreadable version is let through)."""
    output, _ = run_tool([java, "-version"], None, 60.0, "java -version")
    major = java_major_version(output)
    if major is not None and major < MIN_JAVA:
        raise BrokerError(
            f"Java {major} found at {java}, the local Kafka broker needs Java {MIN_JAVA}+"
        )


def java_major_version(version_output: str) -> int | None:
    """The major version in ``java -version`` output (``1.8.0`` is 8), or None."""
    found = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major
