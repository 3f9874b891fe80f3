"""Score a ``timestamp,value`` CSV offline, exactly as the stream scores a series.

The vectorised detectors (seasonal ensemble, robust seasonal) run through a
:class:`~models.series.SeriesBank` as in
the engine (points fed in chunks; the result equals feeding them one by one); the
per-object river detectors run ``score_one`` then ``learn_one`` per point. The output
CSV has ``timestamp,value,anomaly_score`` (the calibrated score the detector reports:
0 in warm-up and during a rest period after an alert), the timestamp column unchanged.

>>> import io
>>> rows = [("2024-01-01 00:%02d:00" % i, 1.0 + (i % 3) * 0.01) for i in range(40)]
>>> times, values, scores = score_series([r[0] for r in rows], [r[1] for r in rows],
...                                      RobustSeasonal(warmup=10))
>>> len(scores), float(scores[:10].max())
(40, 0.0)
"""

from __future__ import annotations

import copy
import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.base import Detector, ModelError
from models.ensemble import SeasonalEnsemble
from models.series import SeriesBank, SeriesDetector
from models.univariate import RobustSeasonal
from pipeline.events.times import numbers_to_ms, parse_rfc3339_ms

CHUNK = 1024


def parse_time(text: str) -> int:
    """Epoch ms of ``2014-04-10 07:15:00`` (UTC), an RFC 3339 string or an epoch number."""
    from pipeline.evaluate.nab import parse_timestamp_ms

    text = text.strip()
    try:
        return int(numbers_to_ms(np.array([float(text)]))[0])
    except ValueError:
        pass
    try:
        return parse_timestamp_ms(text)
    except ValueError:
        return parse_rfc3339_ms(text)


def read_csv(path: str | Path) -> tuple[list[str], list[float], list[int]]:
    """The ``timestamp`` and ``value`` columns of a CSV (other columns ignored) and the
    timestamps as epoch ms; a problem raises :class:`ModelError` naming file and line."""
    times, values, ms = [], [], []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"timestamp", "value"} - set(reader.fieldnames or ())
            if missing:
                raise ModelError(f"{path}: expected columns timestamp,value; missing "
                                 f"{', '.join(sorted(missing))}")
            for n, row in enumerate(reader, start=2):
                try:
                    value = float(row["value"])
                except (TypeError, ValueError):
                    raise ModelError(f"{path}:{n}: value {row['value']!r} is not a number"
                                     ) from None
                if not np.isfinite(value):
                    raise ModelError(f"{path}:{n}: value {row['value']!r} is not finite")
                stamp = row["timestamp"]
                try:
                    ms.append(parse_time(stamp or ""))
                except ValueError:
                    raise ModelError(f"{path}:{n}: timestamp {str(stamp)[:40]!r} is not "
                                     "'YYYY-MM-DD HH:MM:SS', RFC 3339 or epoch seconds/ms"
                                     ) from None
                values.append(value)
                times.append(stamp)
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ModelError(f"{path}: not a readable CSV ({exc})") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not values:
        raise ModelError(f"{path}: no rows after the timestamp,value header")
    return times, values, ms


def score_series(timestamps: Sequence[str | int], values: Sequence[float],
                 detector: Detector) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times ms, values, scores) of one series streamed through a copy of ``detector``."""
    t = np.asarray([v if isinstance(v, (int, np.integer)) else parse_time(v)
                    for v in timestamps], dtype=np.int64)
    x = np.asarray(values, dtype=np.float64)
    scores = np.zeros(x.size)
    if isinstance(detector, (SeasonalEnsemble, RobustSeasonal)):
        bank = SeriesBank(copy.deepcopy(detector))
        for lo in range(0, x.size, CHUNK):
            hi = min(lo + CHUNK, x.size)
            slots = bank.slots(["series"] * (hi - lo))
            scores[lo:hi] = bank.process(slots, t[lo:hi], x[lo:hi], 2.0, 0.0).score
        return t, x, scores
    detector = copy.deepcopy(detector)
    for i, (ti, xi) in enumerate(zip(t.tolist(), x.tolist(), strict=True)):
        point = {"value": xi, "time": ti}
        scores[i] = detector.score_one(point)
        detector.learn_one(point)
    return t, x, scores


def score_csv(input_path: str | Path, output_path: str | Path, detector: Detector) -> int:
    """Score a CSV into ``output_path``; returns the number of rows."""
    times, values, ms = read_csv(input_path)
    _, _, scores = score_series(ms, values, detector)
    with open(output_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "value", "anomaly_score"])
        for ts, v, s in zip(times, values, scores.tolist(), strict=True):
            writer.writerow([ts, repr(v), f"{s:.6f}"])
    return len(times)


def score_many(series: Mapping[Any, tuple[Sequence[int], Sequence[float]]],
               detector: SeriesDetector) -> dict[Any, np.ndarray]:
    """Scores of many series at once (each ``(times ms, values)`` in time order).

    All series go through one series bank, as the stream scores them: the same numbers
    as :func:`score_series` per series, in a fraction of the time.
    """
    keys = list(series)
    names = [str(i) for i in range(len(keys))]
    sizes = [len(series[k][0]) for k in keys]
    bank = SeriesBank(copy.deepcopy(detector))
    slots = bank.slots([n for n, size in zip(names, sizes, strict=True) for _ in range(size)])
    times = np.concatenate([np.asarray(series[k][0], dtype=np.int64) for k in keys])
    values = np.concatenate([np.asarray(series[k][1], dtype=np.float64) for k in keys])
    scores = bank.process(slots, times, values, 2.0, 0.0).score
    return dict(zip(keys, np.split(scores, np.cumsum(sizes)[:-1]), strict=True))
