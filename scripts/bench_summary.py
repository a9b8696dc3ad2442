#!/usr/bin/env python3
"""Medians of the JSON lines `chatgate-load --json` printed (scripts/bench)."""
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def show(title, keys, pick):
    print(f"\n{title} (median of runs)")
    for target in ("chatgate", "bare"):
        sel = [r for r in rows if r["target"] == target and pick(r)]
        if sel:
            print(f"  {target:9}", "  ".join(f"{k}={med([r[k] for r in sel])}" for k in keys))
show("idle", ["welcomed", "server_bytes_per_conn"], lambda r: r["scenario"] == "idle")
keys = ["frames_per_sec", "latency_p50_us", "latency_p99_us", "latency_p999_us",
        "lost", "duplicated", "out_of_order", "server_cpu_us_per_frame", "server_rss_bytes"]
show("fanout at a fixed rate", keys, lambda r: r["scenario"] == "fanout" and r.get("label", "") == "run" and r["via"] == "ingest")
show("fanout through the engine", keys, lambda r: r.get("via") == "engine")
show("find-max: half of max", ["rate_offered"] + keys, lambda r: r.get("label", "") == "half of max")
def maxes(target):
    per_run, cur = [], None
    for r in rows:
        if r["target"] != target or r["scenario"] != "fanout" or not r.get("label", "").startswith("step"):
            continue
        if r.get("label", "") == "step 1":
            per_run.append(0)
        if r["sustained"] and per_run:
            per_run[-1] = max(per_run[-1], r["rate_offered"])
    return per_run
print("\nfind-max: highest sustained notifications/s per run")
for t in ("chatgate", "bare"):
    m = maxes(t)
    if m:
        print(f"  {t:9} runs={m} median={med(m)}")
fixed = [r for r in rows if r["scenario"] == "fanout" and r.get("label", "") == "run" and r["via"] == "ingest"]
cg = med([r["server_cpu_us_per_frame"] for r in fixed if r["target"] == "chatgate"])
bare = med([r["server_cpu_us_per_frame"] for r in fixed if r["target"] == "bare"])
if cg and bare:
    print(f"\nCPU per frame: chatgate {cg:.2f} us, bare {bare:.2f} us: "
          f"chatgate at {100 * bare / cg:.0f}% of bare's efficiency")
