#!/usr/bin/env bash
# usage: fixed.sh LABEL BIN|bare [RATE] [DURATION]: one JSON line with the
# server's CPU per delivered frame at RATE notifications/s (default 10,000)
# to 2,500 sessions x 2, for DURATION s (default 10). `bare` is rust-bare.
set -euo pipefail
source "$(dirname "$0")/common.sh"
LABEL=$1 BIN=$2 RATE=${3:-10000} DUR=${4:-10}
PORT=$(free_port)
if [[ $BIN == bare ]]; then
  PORT=$PORT "$P/target/release/rust-bare" >"/tmp/fixed-$LABEL.log" 2>&1 &
  PID=$!
  wait_for "http://127.0.0.1:$PORT/publish" POST
  TGT=(--target simple)
else
  start_chatgate "/tmp/fixed-$LABEL.log" "$BIN"
  TGT=(--target chatgate --secret "$SECRET")
fi
timeout 120 "$L" "${TGT[@]}" --url "http://127.0.0.1:$PORT" --label "$LABEL" --server-pid "$PID" \
  fanout --rooms 2500 --per-room 2 --rate "$RATE" --duration "$DUR" --payload-bytes 100 2>/dev/null |
  tail -1 | python3 -c "
import sys, json
d = json.loads(sys.stdin.read()); frames = d['delivered_frames_s'] * d['wall_s']
print(json.dumps({'label': '$LABEL', 'us_per_frame': round(d['server_cpu_s'] / frames * 1e6, 2),
  'delivered_frames_s': d['delivered_frames_s'], 'p50_ms': d['p50_ms'], 'p99_ms': d['p99_ms'],
  'lost': d['lost'], 'dup': d['dup'], 'rss_mib': round(d['server_rss_kib'] / 1024, 1),
  'server_cpu_s': d['server_cpu_s']}))"
stop "$PID"
