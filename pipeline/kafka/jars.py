"""The broker's jars: resolved once by Maven (from Maven Central) into Tocsin's cache.

``$XDG_CACHE_HOME/tocsin/kafka/VERSION/libs`` holds them once a marker file says the
download completed; a half download is redone from scratch, and concurrent resolutions
take turns on a lock.
"""

from __future__ import annotations

import os
import re
import shutil
from importlib import resources
from pathlib import Path

from pipeline.errors import BrokerError
from pipeline.kafka.tools import locked, run_tool, tail

KAFKA_VERSION = "4.1.1"

_MARKER = ".tocsin-complete"
_MVN_TIMEOUT_S = 900.0
_VERSION_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]*")
_MAVEN_NOISE = re.compile(
    r"^\[ERROR\] *(|To see .*|Re-run Maven .*|For more .*|\[Help 1\].*)\n", re.M
)
_MAVEN_MISSING = (
    "Maven is not installed: the local Kafka broker's jars are resolved with Maven "
    "(mvn on PATH), e.g. `apt-get install maven`; or use docker compose or an existing "
    "Kafka cluster"
)


def default_cache_dir() -> Path:
    """Tocsin's cache: ``$XDG_CACHE_HOME/tocsin``, else ``~/.cache/tocsin``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "tocsin"


def check_version(version: str) -> None:
    """Refuse a Kafka version that is not a plain name (it becomes a directory name)."""
    if not _VERSION_RE.fullmatch(version):
        raise BrokerError(f"version must look like {KAFKA_VERSION}, got {version!r}")


def ensure_jars(version: str = KAFKA_VERSION, cache_dir: Path | None = None) -> Path:
    """The directory of the broker jars for ``version``, resolved with Maven if not cached."""
    check_version(version)
    root = Path(cache_dir or default_cache_dir()).expanduser() / "kafka" / version
    libs = root / "libs"
    if (libs / _MARKER).is_file():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(_MAVEN_MISSING)
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / ".lock"):
        if (libs / _MARKER).is_file():  # another process finished while we waited
            return libs
        partial = root / "libs.partial"
        for leftover in (libs, partial):  # a half download is redone from scratch
            shutil.rmtree(leftover, ignore_errors=True)
        pom = root / "pom.xml"
        pom.write_text(resources.files("pipeline.kafka").joinpath("pom.xml").read_text("utf-8"))
        command = [
            mvn, "-q", "-B", "-U", "-Dstyle.color=never", "-f", str(pom),
            "dependency:copy-dependencies", f"-Dkafka.version={version}",
            f"-DoutputDirectory={partial}", "-Dmdep.includeScope=runtime",
        ]  # fmt: skip
        output, code = run_tool(command, root, _MVN_TIMEOUT_S, f"Maven resolving Kafka {version}")
        jars = sorted(path.name for path in partial.glob("*.jar"))
        if code != 0 or not any(name.startswith("kafka_2.13-") for name in jars):
            raise BrokerError(
                f"Maven could not resolve the Kafka {version} broker jars (exit {code}):\n"
                f"{tail(_MAVEN_NOISE.sub('', output))}"
            )
        (partial / _MARKER).write_text("\n".join(jars) + "\n")
        os.replace(partial, libs)
    return libs
