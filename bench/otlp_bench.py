"""OTLP decode throughput: Collector export messages into column batches, on one core.

Builds ``--points`` metric data points (default 200,000) as the OpenTelemetry Collector's
Kafka exporter sends them: ``MetricsData`` messages of ``--per-message`` points (default
1,000). Resources are 20 services x 5 hosts, each reporting 10 metrics with one point per
attribute set (5 ``http.route`` x 2 ``http.request.method``): 100 points per resource,
as an SDK exports them. ``--mix`` picks the metric type: ``gauge``,
``sum`` (cumulative monotonic counters: rates from the series memory), ``histogram``
(delta, 12 buckets: 5 rows per point; counts drawn per point from a seeded generator,
so no two points hash alike, as in real traffic), ``cumulative-histogram`` (each
series' buckets growing by such counts: rates and quantiles from differences),
``exponential-histogram`` (cumulative, scale 3, the same counts over 12 buckets from
offset 20), ``summary`` (count, sum and three quantiles) or ``mixed`` (gauge, sum,
histogram). Then times, best of
``--repeat`` runs, in CPU seconds of this process (``time.process_time``: per core, and
fair on a busy machine):

1. ``otlp_proto -> columns``: :func:`pipeline.events.otlp.decode_otlp` (protobuf parse,
   mapping, checks, event ids), the figure the issue's target (>= 200 k points/s) is for,
   for each OTLP metrics decoder side by side: ``c`` (the C wire scanner, when built) and
   ``python`` (the protobuf library);
2. ``... + Arrow``: the same plus the Arrow table the store takes;
3. ``otlp_json -> columns``: the same points as OTLP/JSON (one run only: it is slow);
4. ``Tocsin JSON -> columns``: the same points as Tocsin's JSON records (gauges only:
   one row per point), through :func:`pipeline.events.codec.decode_messages`.

    .venv/bin/python bench/otlp_bench.py [--points 200000] [--per-message 1000]
        [--mix gauge|sum|histogram|cumulative-histogram|exponential-histogram|summary|mixed]
        [--repeat 3] [--decoder c|python] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable

import orjson
from google.protobuf.internal import api_implementation
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData

from pipeline.events.codec import DecodeLimits, decode_messages
from pipeline.events.otlp import decode_otlp
from pipeline.events.otlp_series import SeriesMemory
from pipeline.events.otlp_wire import metrics_decoder
from pipeline.events.schema import RawMessage, RecordKind
from pipeline.simulate.otlp import encode

NOW_MS = 1_780_000_000_000
SERVICES, HOSTS, METRICS = 20, 5, 10
ROUTES = ("/orders", "/orders/{id}", "/cart", "/checkout", "/search")
METHODS = ("GET", "POST")
BOUNDS = [5.0, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500]
SHAPE = (1, 2, 5, 10, 15, 10, 8, 4, 2, 1, 1, 1)  # a latency histogram's typical buckets
MIDDLES = (2.5, 7.5, 17.5, 37.5, 62.5, 87.5, 175, 375, 625, 875, 1750, 3000)


def interval_counts(rng: random.Random) -> tuple[list[int], float]:
    """One 10 s interval's bucket counts (about 60 requests, shaped as ``SHAPE``, varying
    per point as real traffic does) and their sum."""
    counts = [rng.randint(0, 2 * c) for c in SHAPE]
    return counts, round(sum(c * m * rng.uniform(0.8, 1.2)
                             for c, m in zip(counts, MIDDLES, strict=True)), 3)



def running_totals(totals: dict, series: tuple, rng) -> tuple[list[int], float]:
    """A cumulative series' bucket counts and sum after one more interval."""
    counts, total = interval_counts(rng)
    before, before_total = totals.get(series, ([0] * len(SHAPE), 0.0))
    counts = [a + b for a, b in zip(before, counts, strict=True)]
    total = round(before_total + total, 3)
    totals[series] = (counts, total)
    return counts, total

def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def build(points: int, per_message: int, mix: str) -> tuple[list[bytes], list[bytes], int]:
    """(protobuf messages, Tocsin JSON messages, points).

    As an SDK exports: per resource (service, host) every metric has one point per
    attribute set (5 routes x 2 methods), so a resource gives 100 points.
    """
    kinds = {"gauge": ["gauge"], "sum": ["sum"], "histogram": ["histogram"],
             "cumulative-histogram": ["cumulative-histogram"],
             "exponential-histogram": ["exponential-histogram"], "summary": ["summary"],
             "mixed": ["gauge", "sum", "histogram"]}[mix]
    start_ns = (NOW_MS - 7_200_000) * 1_000_000  # cumulative series started before
    combos = [(r, m) for r in ROUTES for m in METHODS]
    rng = random.Random(12)  # histogram counts vary per point, the same every run
    totals: dict[tuple, tuple[list[int], float]] = {}  # cumulative histograms so far
    protos, jsons, made, round_, resource = [], [], 0, 0, 0
    while made < points:
        data = MetricsData()
        records = []
        n = min(per_message, points - made)
        in_message = 0
        while in_message < n:
            s, h = resource % SERVICES, resource // SERVICES % HOSTS
            resource += 1
            if resource % (SERVICES * HOSTS) == 0:
                round_ += 1  # every resource reported once: the next round, 10 s later
            t_ns = (NOW_MS - 3_600_000 + round_ * 10_000) * 1_000_000
            rm = data.resource_metrics.add()
            rm.resource.attributes.extend([_kv("service.name", f"svc-{s}"),
                                           _kv("host.name", f"svc-{s}-{h}")])
            scope = rm.scope_metrics.add()
            scope.scope.name = "io.opentelemetry.http"
            for j in range(METRICS):
                if in_message >= n:
                    break
                kind = kinds[j % len(kinds)]
                name = f"app.metric.{j}"
                metric = scope.metrics.add(name=name, unit="ms")
                if kind == "sum":
                    metric.sum.aggregation_temporality = 2
                    metric.sum.is_monotonic = True
                elif kind == "histogram":
                    metric.histogram.aggregation_temporality = 1
                elif kind == "cumulative-histogram":
                    metric.histogram.aggregation_temporality = 2
                elif kind == "exponential-histogram":
                    metric.exponential_histogram.aggregation_temporality = 2
                for k, (route, method) in enumerate(combos[:n - in_message]):
                    attrs = [_kv("http.route", route), _kv("http.request.method", method)]
                    value = float(round_ * 10 + k)
                    if kind == "histogram":
                        counts, total = interval_counts(rng)
                        dp = metric.histogram.data_points.add(
                            time_unix_nano=t_ns, start_time_unix_nano=t_ns - 10 * 10**9,
                            count=sum(counts), sum=total, explicit_bounds=BOUNDS,
                            bucket_counts=counts)
                    elif kind == "cumulative-histogram":
                        series = (s, h, j, k)
                        counts, total = running_totals(totals, series, rng)
                        dp = metric.histogram.data_points.add(
                            time_unix_nano=t_ns, start_time_unix_nano=start_ns,
                            count=sum(counts), sum=total, explicit_bounds=BOUNDS,
                            bucket_counts=counts)
                    elif kind in ("exponential-histogram", "summary"):
                        series = (s, h, j, k)
                        counts, total = running_totals(totals, series, rng)
                        if kind == "summary":
                            dp = metric.summary.data_points.add(
                                time_unix_nano=t_ns, start_time_unix_nano=start_ns,
                                count=sum(counts), sum=total)
                            for q, v in ((0.5, 40.0 + k), (0.95, 300.0 + k), (0.99, 900.0)):
                                dp.quantile_values.add(quantile=q, value=v)
                        else:
                            dp = metric.exponential_histogram.data_points.add(
                                time_unix_nano=t_ns, start_time_unix_nano=start_ns,
                                count=sum(counts), sum=total, scale=3)
                            dp.positive.offset = 20
                            dp.positive.bucket_counts.extend(counts)
                    else:  # a counter's start stays; a gauge's is not read
                        body = metric.sum if kind == "sum" else metric.gauge
                        dp = body.data_points.add(time_unix_nano=t_ns,
                                                  start_time_unix_nano=start_ns,
                                                  as_double=value)
                    dp.attributes.extend(attrs)
                    records.append({"time": t_ns // 1_000_000, "service.name": f"svc-{s}",
                                    "host.name": f"svc-{s}-{h}", "name": name,
                                    "value": value, "unit": "ms", "attributes": {
                                        "http.route": route, "http.request.method": method,
                                        "otel.scope.name": "io.opentelemetry.http"}})
                    in_message += 1
        protos.append(data.SerializeToString())
        jsons.append(orjson.dumps(records))
        made += n
    return protos, jsons, made


def cpu_s(run: Callable[[], object], repeat: int) -> list[float]:
    """The CPU seconds of ``repeat`` runs, fastest first."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return sorted(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--per-message", type=int, default=1_000)
    parser.add_argument("--mix", choices=("gauge", "sum", "histogram", "cumulative-histogram",
                                          "exponential-histogram", "summary", "mixed"),
                        default="gauge")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--decoder", choices=("c", "python"),
                        help="only this OTLP metrics decoder's protobuf cases (no JSON cases)")
    args = parser.parse_args(argv)

    protos, jsons, points = build(args.points, args.per_message, args.mix)
    otlp_json = [encode(MetricsData.FromString(p), "otlp-json") for p in protos]
    limits = DecodeLimits(NOW_MS)

    def raw(values: list[bytes]) -> list[RawMessage]:
        return [RawMessage("bench", 0, i, v) for i, v in enumerate(values)]

    proto_msgs, otlp_json_msgs, json_msgs = raw(protos), raw(otlp_json), raw(jsons)
    def memory() -> SeriesMemory:  # fresh per run: each series' first point seeds it
        return SeriesMemory(max_series=1_000_000)

    decoders = [args.decoder] if args.decoder else \
        ["c", "python"] if metrics_decoder() == "c" else ["python"]
    rows = 0
    for decoder in decoders:  # warm-up, and both decoders give the same rows
        rows = len(decode_otlp(RecordKind.METRIC, proto_msgs, limits, memory(),
                               decoder=decoder))
    figures = {"points": points, "messages": len(protos), "mix": args.mix,
               "rows": rows, "protobuf_backend": api_implementation.Type(),
               "decoders": decoders,
               "bytes_per_point_proto": round(sum(map(len, protos)) / points, 1)}
    cases: dict[str, Callable[[], object]] = {}
    for decoder in decoders:
        cases[f"otlp_proto -> columns [{decoder}]"] = lambda d=decoder: decode_otlp(
            RecordKind.METRIC, proto_msgs, limits, memory(), decoder=d)
        cases[f"otlp_proto -> columns + Arrow [{decoder}]"] = lambda d=decoder: decode_otlp(
            RecordKind.METRIC, proto_msgs, limits, memory(), decoder=d).to_arrow()
    if not args.decoder:
        cases["otlp_json -> columns"] = lambda: decode_otlp(
            RecordKind.METRIC, otlp_json_msgs, limits, memory())
    if args.mix == "gauge" and not args.decoder:
        cases["Tocsin JSON -> columns"] = lambda: decode_messages(
            RecordKind.METRIC, json_msgs, limits)
    print(f"{points:,} points in {len(protos):,} messages ({args.mix}), {rows:,} rows; "
          f"protobuf backend {figures['protobuf_backend']}; CPU seconds, best of "
          f"{args.repeat} (median, slowest)")
    for label, run in cases.items():
        # OTLP/JSON is an order of magnitude slower (protobuf's pure-Python JSON parser):
        # one run of it is enough
        times = cpu_s(run, 1 if label.startswith("otlp_json") else args.repeat)
        figures[label] = round(points / times[0])
        print(f"  {label:<42} {points / times[0]:>12,.0f} points/s "
              f"({points / times[len(times) // 2]:,.0f}, {points / times[-1]:,.0f})")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
