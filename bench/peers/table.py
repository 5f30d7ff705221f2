#!/usr/bin/env python3
"""The side-by-side table of bench/peers/compare.sh's results (JSON lines), as Markdown.

Each cell is the median over rounds; the ratio is Fjord's median over Kafka's (for
latency and CPU and RSS, Kafka's over Fjord's is not used: every ratio reads "Fjord / Kafka").

  bench/peers/table.py bench-results/compare.jsonl
  bench/peers/table.py --one JSON      (one result as a line, for the progress log)
"""
import json
import statistics
import sys


def one(result):
    r = json.loads(result)
    lat = r.get("latency_ms") or {}
    return (f"{r['records_per_sec']:.0f} records/s, p99 {lat.get('p99')} ms, broker CPU "
            f"{r['broker_cpu_s_per_gb']} s/GB, RSS {r['broker_peak_rss_mb']} MB")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0, unit=""):
    if v is None:
        return "-"
    if digits == 0 and abs(v) >= 1e6:
        return f"{v / 1e6:.2f} M{unit}"
    return f"{v:,.{digits}f}{unit}"


def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b not in (None, 0) else "-"


def main(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    rows = []
    for run in runs:
        key = (run["row"], run["client"])
        if key not in rows:
            rows.append(key)
    print("| workload | client | Fjord | Kafka | Fjord/Kafka | broker CPU s/GB Fjord / Kafka | broker peak RSS MB Fjord / Kafka | runs |")
    print("|---|---|---|---|---|---|---|---|")
    for row, client in rows:
        cell = {}
        for broker in ("fjord", "kafka"):
            results = [r["result"] for r in runs
                       if r["row"] == row and r["client"] == client and r["broker"] == broker]
            ok = [r for r in results if r]
            e2e = row.startswith("e2e")
            cell[broker] = {
                "value": median([(r["latency_ms"] or {}).get("p99") if e2e else r["records_per_sec"] for r in ok]),
                "p50": median([(r["latency_ms"] or {}).get("p50") for r in ok]) if e2e else None,
                "cpu": median([r["broker_cpu_s_per_gb"] for r in ok]),
                "rss": median([r["broker_peak_rss_mb"] for r in ok]),
                "n": f"{len(ok)}/{len(results)}",
            }
        f, k = cell["fjord"], cell["kafka"]
        if row.startswith("e2e"):
            show = lambda c: "-" if c["value"] is None else f"p50 {c['p50']:.2f} / p99 {c['value']:.2f} ms"
        else:
            show = lambda c: fmt(c["value"], unit=" rec/s")
        print(f"| {row} | {client} | {show(f)} | {show(k)} | {ratio(f['value'], k['value'])} | "
              f"{fmt(f['cpu'], 1)} / {fmt(k['cpu'], 1)} ({ratio(f['cpu'], k['cpu'])}) | "
              f"{fmt(f['rss'], 0)} / {fmt(k['rss'], 0)} ({ratio(f['rss'], k['rss'])}) | "
              f"{f['n']}, {k['n']} |")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(one(sys.argv[2]) if sys.argv[2] != "null" else "failed")
    elif len(sys.argv) == 2:
        main(sys.argv[1])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
