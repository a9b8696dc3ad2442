#!/usr/bin/env bash
# usage: fixed.sh LABEL BIN|bare [RATE] [DURATION] -> one JSON line with us_per_frame
set -euo pipefail
# Measures chatgate against the peers' yardstick (the loadgen and servers
# of ../shared/peers, built there first: see its README). PEERS_DIR names
# that directory.
HERE=$(cd "$(dirname "$0")" && pwd)
P=${PEERS_DIR:-$HERE/../../../shared/peers}
LABEL=$1 BIN=$2 RATE=${3:-10000} DUR=${4:-10}
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
SECRET=peers-chatgate-secret-0123456789abcdef0123
L=$P/target/release/loadgen
ulimit -n 20000
if [[ $BIN == bare ]]; then
  PORT=$PORT $P/target/release/rust-bare >/tmp/fixed-$LABEL.log 2>&1 &
  TGT="--target simple"
else
  env ${EXTRA:-} CHATGATE_LISTEN=127.0.0.1:$PORT CHATGATE_JWT_SECRET=$SECRET CHATGATE_MAX_CONNECTIONS_PER_ADDRESS=0 RUST_LOG=warn $BIN >/tmp/fixed-$LABEL.log 2>&1 &
  TGT="--target chatgate --secret $SECRET"
fi
PID=$!
for _ in $(seq 100); do
  if [[ $BIN == bare ]]; then curl -s -o /dev/null -X POST --data-binary '' http://127.0.0.1:$PORT/publish && break
  else curl -sf -o /dev/null http://127.0.0.1:$PORT/healthz && break; fi; sleep 0.1; done
timeout 120 $L $TGT --url http://127.0.0.1:$PORT --label $LABEL --server-pid $PID fanout --rooms 2500 --per-room 2 --rate $RATE --duration $DUR --payload-bytes 100 2>/dev/null | tail -1 | python3 -c "
import sys,json
d=json.loads(sys.stdin.read()); fr=d['delivered_frames_s']*d['wall_s']
print(json.dumps({'label':'$LABEL','us_per_frame':round(d['server_cpu_s']/fr*1e6,2),'delivered_frames_s':d['delivered_frames_s'],'p50_ms':d['p50_ms'],'p99_ms':d['p99_ms'],'lost':d['lost'],'dup':d['dup'],'rss_mib':round(d['server_rss_kib']/1024,1),'server_cpu_s':d['server_cpu_s']}))"
kill $PID; wait $PID 2>/dev/null || true
