#!/usr/bin/env bash
# usage: idle.sh LABEL BIN [CONNS]  -> prints loadgen idle JSON
set -euo pipefail
# Measures chatgate against the peers' yardstick (the loadgen and servers
# of ../shared/peers, built there first: see its README). PEERS_DIR names
# that directory.
HERE=$(cd "$(dirname "$0")" && pwd)
P=${PEERS_DIR:-$HERE/../../../shared/peers}
LABEL=$1 BIN=$2 CONNS=${3:-10000}
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
SECRET=peers-chatgate-secret-0123456789abcdef0123
L=$P/target/release/loadgen
ulimit -n 20000
CHATGATE_LISTEN=127.0.0.1:$PORT CHATGATE_JWT_SECRET=$SECRET CHATGATE_MAX_CONNECTIONS_PER_ADDRESS=0 RUST_LOG=warn $BIN >/tmp/idle-$LABEL.log 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:$PORT/healthz && break; sleep 0.1; done
timeout 300 $L --target chatgate --secret $SECRET --url http://127.0.0.1:$PORT --label $LABEL --server-pid $PID idle --conns $CONNS --per-room 2 || true
kill $PID; wait $PID 2>/dev/null || true
