"""One detection step: run the detector engines over forwarded slices and ticks.

Plain Python, no Faust: the detect agent hands over a batch of messages of one or more
partitions and a way to read each service's stored state; the step returns the new state
per (engine, service), to be written once per batch, and the detections to publish.
Engines (the rule engine of ``detectors``, the model engine of ``models``) share one
shape, :class:`Engine`.

Batched (the default): an engine that can *stage* slices (``stage`` and
``process_staged``, as the model engine does) gets every metric slice of the step, of
every service, scored together after the other messages, one numpy round per point of a
series instead of per point of a series of one service; a service's slices still come
in order, so the detections are those of scoring them one by one (``batched=False``).
The model engine's metric state does not depend on ticks, so deferring it past them
changes nothing. An engine that can fold many slices at once (``process_many``, as the
rule engine does) gets the slices that came before each tick together, just before it
(or once about :data:`MAX_STEP_RECORDS` records wait): the rules' windows do depend on
ticks, so they see every slice before the tick that follows it, as one by one. Should
that call fail, each of its slices counts as an engine failure, logged.

Live states: the step keeps the states it leaves decoded (:mod:`pipeline.detect.live`)
and, next time, uses one instead of decoding it only while ``read_state`` still gives
the very bytes it left; only states whose bytes changed are returned to be stored.

Memory: the staged metric slices are scored after the loop, a group of services of about
:data:`MAX_STEP_RECORDS` records, or of states taking about :data:`MAX_GROUP_BYTES`
decoded, at a time; once a group is scored nothing else in the
step touches those services' states of that engine, so they are encoded (the bytes to
store) and let go before the next group is decoded. The model engine's states decode
their metric series only when scored (``models.service_state``), so a step that meets a
million series holds about one group's series decoded at a time, not all of them.

Warm-up from history: when an engine can seed series (``missing_series`` and ``seed``,
as the model engine does) and the step has a :data:`HistoryReader`, the metric series of
a slice that the engine has no state for are first taught their recent stored history,
one bounded read per service and slice (batched, with a :data:`HistoryBatchReader`: one
read for the first slices of all services, one for the second ...), so a restarted,
rebalanced or new worker is not blind while its models warm up. A failed read is logged
and counted; detection goes on cold.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.detect.live import LIVE_STATE_BYTES, LiveStates
from pipeline.events.columns import TIME_COLUMN
from pipeline.events.detection import Detection
from pipeline.events.printable import printable
from pipeline.events.slices import TICK_KEY, ServiceSlice, Tick, decode_ticks, read_slice

log = logging.getLogger("tocsin.detect")

MAX_STEP_RECORDS = 50_000
"""Staged metric records a step scores at once, about: a larger batch is scored a group
of services at a time (every slice of a service in its group), each group's states
stored and let go before the next, so a batch of many series does not hold all their
state and scoring arrays at once."""
MAX_GROUP_BYTES = 64 * 2**20
"""Memory the states of one group take decoded, about (each engine's ``decoded_size``
of the stored bytes): a group also closes there, so that services of many series each
are not all decoded at once however few records they bring."""


class EngineState(Protocol):
    """The state of one engine for one service."""

    def to_bytes(self) -> bytes: ...


class Engine(Protocol):
    """A detector engine: per-service state in, state and detections out."""

    def new_state(self) -> Any: ...

    def state_from_bytes(self, data: bytes) -> Any: ...

    def process(self, signal: str, columns: Mapping[str, Any],
                state: Any) -> tuple[Any, list[Detection], Any]: ...

    def advance(self, state: Any, watermark_ms: int) -> tuple[Any, list[Detection]]: ...


@dataclass(frozen=True)
class Message:
    """A message of the by-service topic as the step needs it."""

    partition: int
    key: bytes
    value: bytes


@dataclass
class StepResult:
    """New states to store and detections to publish after one step: ``states`` holds
    only those whose bytes differ from what was read (or that were not stored yet)."""

    states: dict[tuple[str, str], bytes] = field(default_factory=dict)
    detections: list[Detection] = field(default_factory=list)
    late_records: int = 0
    slices: int = 0
    watermark_ms: int = -1  # event time every partition seen has passed (the slowest one)
    errors: int = 0  # engine failures, logged with the service they concern
    seeded: int = 0  # series warmed up from stored history
    history_errors: int = 0  # history reads that failed (the series start cold)


StateReader = Callable[[str, str], bytes | None]
HistoryReader = Callable[[str, Sequence[tuple[str, str]], int], Mapping[str, Any]]
"""``(service, [(host, metric)], before_ms)`` -> metric columns (``time``, ``host``,
``name``, ``value``) of those series' recent points before ``before_ms``."""


HistoryBatchReader = Callable[[Sequence[tuple[str, Sequence[tuple[str, str]], int]]],
                              Sequence[Mapping[str, Any]]]
"""Many :data:`HistoryReader` requests ``(service, [(host, metric)], before_ms)`` at
once (services distinct), one answer each in order."""


class Watermarks:
    """Event-time progress per partition: the slowest source with a backlog decides.

    A *source* is one partition of an ingest topic (``metrics/0`` ...); its ingest agent
    ticks every by-service partition with how far it has forwarded and whether records
    are still waiting. While a source has a backlog, event time cannot pass it (a
    partition fetched later, or logs behind metrics in a replay, would otherwise arrive
    late). A source with nothing waiting holds nothing back: its next record is new.
    """

    def __init__(self) -> None:
        self._ticks: dict[int, dict[str, Tick]] = {}

    def observe(self, partition: int, tick: Tick) -> int:
        """Record a tick; returns the partition's watermark (before lateness)."""
        ticks = self._ticks.setdefault(partition, {})
        previous = ticks.get(tick.source)
        if previous is not None and previous.time_ms > tick.time_ms:
            tick = Tick(tick.source, previous.time_ms, tick.backlog)
        ticks[tick.source] = tick
        behind = [t.time_ms for t in ticks.values() if t.backlog]
        return min(behind) if behind else max(t.time_ms for t in ticks.values())

    def forget(self, partition: int) -> None:
        """Drop what is known of ``partition``."""
        self._ticks.pop(partition, None)

    def sources(self) -> dict[str, Tick]:
        """Each source's latest tick over every partition: furthest time, and a backlog
        if any partition last heard of one."""
        merged: dict[str, Tick] = {}
        for ticks in self._ticks.values():
            for name, tick in ticks.items():
                seen = merged.get(name)
                if seen is not None:
                    tick = Tick(name, max(seen.time_ms, tick.time_ms),
                                seen.backlog or tick.backlog)
                merged[name] = tick
        return dict(sorted(merged.items()))


class DetectionStep:
    """Applies engines to messages in order, touching each service's state once."""

    def __init__(self, engines: Mapping[str, Engine], allowed_lateness_ms: int,
                 history: HistoryReader | None = None, batched: bool = True,
                 history_many: HistoryBatchReader | None = None,
                 max_records: int = MAX_STEP_RECORDS,
                 live_bytes: int = LIVE_STATE_BYTES,
                 max_group_bytes: int = MAX_GROUP_BYTES) -> None:
        self.engines = dict(engines)
        self.batched = batched
        self.max_records = max(1, max_records)
        self.max_group_bytes = max(1, max_group_bytes)
        # states kept decoded between steps (up to ``live_bytes`` of what they take
        # decoded; 0: none), used while the store holds their bytes
        self.live: LiveStates | None = LiveStates(live_bytes) if live_bytes > 0 else None
        self.history_many = history_many if history is not None else None
        self.allowed_lateness_ms = allowed_lateness_ms
        self.history = history
        self.watermarks = Watermarks()
        self._advanced: dict[int, int] = {}

    def run(self, messages: Iterable[Message], read_state: StateReader,
            services_on: Callable[[int], Iterable[str]],
            assigned: Collection[int] | None = None) -> StepResult:
        """Process ``messages`` in order; ``services_on(p)`` lists the services with
        stored state on partition ``p``; ``assigned`` are the partitions this worker
        reads (the result's watermark waits for each of them; None: those seen).

        States are read through ``read_state`` (the store is the truth); one this step
        object left decoded is used instead of decoding the same bytes again."""
        result = StepResult()
        live: dict[tuple[str, str], Any] = {}
        read: dict[tuple[str, str], bytes | None] = {}  # the stored bytes of each state
        where: dict[str, int] = {}  # the partition of each service met
        # staged engines' metric slices, per engine and service in order, as they came
        # (read again when scored: the message's bytes take far less than the columns)
        # (key, value, arrival, records)
        deferred: dict[str, dict[str, list[tuple[bytes, bytes, int, int]]]] = defaultdict(dict)
        done: set[tuple[str, str]] = set()  # states stored already: not to be read again
        # slices waiting to be folded together by engines with ``process_many``
        pending: dict[str, list[ServiceSlice]] = defaultdict(list)
        waiting = [0]  # their records
        new_on: dict[int, set[str]] = defaultdict(set)
        if assigned is not None:
            for partition in set(self._advanced) - set(assigned):  # revoked
                del self._advanced[partition]
                self.watermarks.forget(partition)
            if self.live is not None:
                self.live.keep_partitions(assigned)

        def stored_bytes(key: tuple[str, str]) -> bytes | None:
            """The state's bytes in the store, read once per step."""
            if key not in read:
                read[key] = read_state(*key)
            return read[key]

        def state_of(engine_name: str, service: str) -> Any:
            key = (engine_name, service)
            if key in done:  # its bytes are in the result: the store's would be stale
                raise RuntimeError(f"{engine_name} state of {service} used after it was stored")
            if key not in live:
                engine = self.engines[engine_name]
                stored = stored_bytes(key)
                held = self.live.take(key, stored) if self.live is not None else None
                if held is not None:
                    live[key] = held
                else:
                    live[key] = engine.new_state() if stored is None \
                        else engine.state_from_bytes(stored)
            return live[key]

        def finish(key: tuple[str, str]) -> None:
            """Done with this state in this step: its bytes to store if they changed."""
            state = live.pop(key)
            done.add(key)
            data, before = state.to_bytes(), read[key]
            if before is not None and data == before:
                data = before  # unchanged: nothing to store
            else:
                result.states[key] = data
            if self.live is not None:
                self.live.put(key, state, data, where.get(key[1], -1))

        def decoded_size(name: str, service: str) -> int:
            """About what the service's stored state takes decoded (0: none stored)."""
            data = stored_bytes((name, service))
            if not data:
                return 0
            size = getattr(self.engines[name], "decoded_size", None)
            return size(data) if size is not None else len(data)

        def score_deferred() -> None:
            """The staged slices, a group of services (about ``max_records`` records, or
            states of about ``max_group_bytes`` decoded) at a time, each service's slices
            in order; once a group is scored, nothing else in this step touches its
            services' states of that engine, so they are stored and let go before the
            next group is decoded and scored."""
            for name, by_service in deferred.items():
                groups: list[list[str]] = [[]]
                records = held = 0
                for service, pieces in by_service.items():
                    if groups[-1] and (records >= self.max_records
                                       or held >= self.max_group_bytes):
                        groups.append([])
                        records = held = 0
                    groups[-1].append(service)
                    records += sum(n for _, _, _, n in pieces)
                    held += decoded_size(name, service)
                for group in groups:
                    slices = sorted((order, key, value) for service in group
                                    for key, value, order, _ in by_service[service])
                    items = self._stage(name, [read_slice(key, value)
                                               for _, key, value in slices],
                                        state_of, live, result)
                    for (piece, _), out in zip(items, self._process_staged(name, items,
                                                                          state_of),
                                               strict=True):
                        self._take(name, piece, out, live, result)
                    for service in group:
                        if (name, service) in live:
                            finish((name, service))
            deferred.clear()

        def fold_pending() -> None:
            """The waiting slices, each engine's at once (in order, as one by one)."""
            for name, pieces in pending.items():
                outs = self._process_many(name, pieces, state_of)
                for piece, out in zip(pieces, outs, strict=True):
                    self._take(name, piece, out, live, result)
            pending.clear()
            waiting[0] = 0

        for message in messages:
            if message.key == TICK_KEY:
                fold_pending()
                ticks = decode_ticks(message.value)
                if not ticks:
                    continue
                for tick in ticks:
                    progress = self.watermarks.observe(message.partition, tick)
                watermark = progress - self.allowed_lateness_ms
                if watermark <= self._advanced.get(message.partition, watermark - 1):
                    continue
                self._advanced[message.partition] = watermark
                # the services stored on the partition, and those met first in this step
                services = set(services_on(message.partition)) | new_on[message.partition]
                for service in sorted(services):
                    where[service] = message.partition
                    for name, engine in self.engines.items():
                        try:
                            state, found = engine.advance(state_of(name, service), watermark)
                        except Exception:  # one engine's bug must not stop the stream
                            result.errors += 1
                            log.exception("%s failed advancing %s to %d; its state is kept",
                                          name, printable(service), watermark)
                            continue
                        live[(name, service)] = state
                        result.detections.extend(found)
                continue
            piece = read_slice(message.key, message.value)
            new_on[message.partition].add(piece.service)
            where[piece.service] = message.partition
            result.slices += 1
            records = len(piece.columns.get(TIME_COLUMN.get(piece.signal, ""), ()))
            for name, engine in self.engines.items():
                if self.batched and hasattr(engine, "process_many") \
                        and piece.signal in TIME_COLUMN:
                    pending[name].append(piece)  # folded with others before the next tick
                    waiting[0] += records
                    continue
                if self.batched and piece.signal == "metrics" and hasattr(engine, "stage"):
                    # warmed up and scored after the loop
                    deferred[name].setdefault(piece.service, []).append(
                        (message.key, message.value, result.slices, records))
                    continue
                if piece.signal == "metrics" and self.history is not None \
                        and hasattr(engine, "seed"):
                    self._warm_up(engine, piece, state_of(name, piece.service), result)
                self._take(name, piece, _process(engine, piece, state_of(name, piece.service)),
                           live, result)
            if waiting[0] >= self.max_records:
                fold_pending()
        fold_pending()
        score_deferred()
        # detections leave in event-time order: a step closes each service's windows in
        # turn, and whoever reads them (the correlator) should not see time go backwards
        result.detections.sort(key=lambda d: (d.time, d.id))
        if assigned is not None:  # a partition not ticked yet holds everything back
            result.watermark_ms = min((self._advanced.get(p, -1) for p in assigned),
                                      default=-1)
        elif self._advanced:
            result.watermark_ms = min(self._advanced.values())
        for key in list(live):
            finish(key)
        return result

    def _stage(self, name: str, pieces: list[ServiceSlice],
               state_of: Callable[[str, str], Any], live: dict[tuple[str, str], Any],
               result: StepResult) -> list[tuple[ServiceSlice, Any]]:
        """Warm up and stage engine ``name``'s metric slices, in rounds: the k-th slice
        of every service in round k, whose history reads go out together; a service's
        slices stay in order, each after the one before (as one by one)."""
        engine = self.engines[name]
        rounds: list[list[ServiceSlice]] = []
        met: dict[str, int] = defaultdict(int)
        for piece in pieces:
            k = met[piece.service]
            met[piece.service] += 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(piece)
        staged: list[tuple[ServiceSlice, Any]] = []
        for group in rounds:
            histories: dict[int, Any] = {}
            if self.history is not None and hasattr(engine, "seed"):
                histories = self._read_histories(name, group, state_of, result)
            for n, piece in enumerate(group):
                state = state_of(name, piece.service)
                if n in histories:
                    try:
                        result.seeded += engine.seed(state, histories[n])
                    except Exception:
                        result.errors += 1
                        log.exception("seeding series of %s from history failed",
                                      printable(piece.service))
                try:
                    handle = engine.stage(piece.signal, piece.columns, state)
                except Exception as exc:  # one engine's bug must not stop the stream
                    self._take(name, piece, exc, live, result)
                    continue
                if handle is None:  # nothing to score together (an empty slice)
                    self._take(name, piece, _process(engine, piece, state), live, result)
                else:
                    staged.append((piece, handle))
        return staged

    def _read_histories(self, name: str, group: list[ServiceSlice],
                        state_of: Callable[[str, str], Any], result: StepResult
                        ) -> dict[int, Any]:
        """The stored history of the series each slice of ``group`` (one per service)
        has no state for, by position in ``group``; in one read with ``history_many``.
        A failed read is logged and counted per slice; those series start cold."""
        assert self.history is not None
        engine = self.engines[name]
        asked: list[tuple[int, str, Sequence[tuple[str, str]], int]] = []
        for n, piece in enumerate(group):
            try:
                missing = engine.missing_series(piece.columns, state_of(name, piece.service))
                if missing:
                    asked.append((n, piece.service, missing,
                                  int(min(piece.columns["time"]))))
            except Exception:
                result.history_errors += 1
                log.exception("finding the series of %s to warm up failed; they start cold",
                              printable(piece.service))
        if not asked:
            return {}
        if self.history_many is not None:
            try:
                answers = self.history_many([(s, m, b) for _, s, m, b in asked])
                return {n: answer for (n, _, _, _), answer in zip(asked, answers, strict=True)}
            except Exception:  # the store may be down: detection goes on, cold
                result.history_errors += len(asked)
                log.exception("reading the history of %d services failed; their new series "
                              "start cold", len(asked))
                return {}
        out: dict[int, Any] = {}
        for n, service, missing, before in asked:
            try:
                out[n] = self.history(service, missing, before)
            except Exception:
                result.history_errors += 1
                log.exception("reading the history of %d series of %s failed; they start "
                              "cold", len(missing), printable(service))
        return out

    def _process_many(self, name: str, pieces: list[ServiceSlice],
                      state_of: Callable[[str, str], Any]) -> list[Any]:
        """Engine ``name``'s ``process_many`` of the slices; what it raised, for each,
        if it fails."""
        try:
            return list(self.engines[name].process_many(
                [(p.signal, p.columns, state_of(name, p.service)) for p in pieces]))
        except Exception as exc:  # one engine's bug must not stop the stream
            return [exc] * len(pieces)

    def _process_staged(self, name: str, items: list[tuple[ServiceSlice, Any]],
                        state_of: Callable[[str, str], Any]) -> list[Any]:
        """The staged slices of engine ``name`` scored together; one by one if that
        fails (it changes no state when it does)."""
        engine = self.engines[name]
        try:
            return list(engine.process_staged([handle for _, handle in items]))
        except Exception:
            log.exception("%s failed scoring %d slices together; scoring them one by one",
                          name, len(items))
        outs: list[Any] = []
        for piece, _ in items:
            try:
                outs.append(engine.process(piece.signal, piece.columns,
                                           state_of(name, piece.service)))
            except Exception as exc:
                outs.append(exc)
        return outs

    def _take(self, name: str, piece: ServiceSlice, out: Any, live: dict[tuple[str, str], Any],
              result: StepResult) -> None:
        """Keep what ``engine.process`` gave for one slice, or log what it raised."""
        if isinstance(out, Exception):
            result.errors += 1
            log.error("%s failed on %d %s records of %s; its state is kept", name,
                      len(piece.columns.get("service", ())), piece.signal,
                      printable(piece.service), exc_info=out)
            return
        state, found, stats = out
        live[(name, piece.service)] = state
        result.detections.extend(found)
        late = _late_count(stats)
        if late:
            result.late_records += late
            log.warning("%s: %d %s records of %s arrived later than the allowed "
                        "lateness (%d ms) and were counted, not windowed",
                        name, late, piece.signal, printable(piece.service),
                        self.allowed_lateness_ms)

    def _warm_up(self, engine: Any, piece: Any, state: Any, result: StepResult) -> None:
        """Seed the slice's metric series the engine has no state for from history."""
        assert self.history is not None
        try:
            missing = engine.missing_series(piece.columns, state)
            if not missing:
                return
            before = int(min(piece.columns["time"]))
            history = self.history(piece.service, missing, before)
        except Exception:  # the store may be down: detection goes on, cold
            result.history_errors += 1
            log.exception("reading the history of %d series of %s failed; they start cold",
                          len(missing), piece.service)
            return
        try:
            result.seeded += engine.seed(state, history)
        except Exception:
            result.errors += 1
            log.exception("seeding %d series of %s from history failed", len(missing),
                          piece.service)


def _process(engine: Engine, piece: ServiceSlice, state: Any) -> Any:
    """``engine.process`` of one slice, or the exception it raised."""
    try:
        return engine.process(piece.signal, piece.columns, state)
    except Exception as exc:  # one engine's bug must not stop the stream
        return exc


def _late_count(stats: Any) -> int:
    if stats is None:
        return 0
    if isinstance(stats, int):
        return stats
    for attr in ("late", "late_records", "total_late"):
        value = getattr(stats, attr, None)
        if isinstance(value, int):
            return value
        if isinstance(value, Mapping):
            return int(sum(value.values()))
    return 0
