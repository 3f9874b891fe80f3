"""Choosing between a C extension and the Python path, for a decoder setting.

Both of ingest's C extensions (``_otlpwire`` for OTLP protobuf metrics, ``_jsonscan`` for
Tocsin's JSON) are optional builds with a Python path that gives the same rows; a setting
(``auto``, ``c`` or ``python``) picks one, and the worker logs which runs.
"""

from __future__ import annotations

from types import ModuleType

from pipeline.errors import SettingsError

DECODERS = ("auto", "c", "python")


def choose_decoder(setting: str, requested: str | None, extension: ModuleType | None,
                   module: str) -> str:
    """``c`` or ``python`` for ``requested`` (the value of ``setting``): ``auto`` (or
    None) takes the C extension ``module`` when it was built (``extension`` is not None),
    ``c`` insists on it, ``python`` takes the Python path.

    >>> choose_decoder("ingest.json_decoder", None, None, "pipeline.events._jsonscan")
    'python'
    """
    choice = requested or "auto"
    if choice not in DECODERS:
        raise SettingsError(f"{setting}: {choice!r} is not one of {', '.join(DECODERS)}")
    if choice == "c" and extension is None:
        raise SettingsError(f"{setting}: 'c' asked for, but the C extension {module} is not "
                            "built (pip install -e . with a C compiler and the Python headers)")
    if choice == "auto":
        return "c" if extension is not None else "python"
    return choice


def describe_decoder_choice(decoder: str, extension: ModuleType | None, what: str,
                            c_path: str, python_path: str) -> str:
    """One line for the start-up log: which of ``what``'s paths runs, and why."""
    if decoder == "c":
        return f"{what}: {c_path}"
    why = "asked for" if extension is not None else "the C extension is not built"
    return f"{what}: {python_path} ({why})"
