#!/usr/bin/env bash
# usage: idle.sh LABEL BIN [CONNS]: the loadgen's idle JSON line (CONNS
# connections, 2 per session, the sessions announced first).
set -euo pipefail
source "$(dirname "$0")/common.sh"
LABEL=$1 BIN=$2 CONNS=${3:-10000}
PORT=$(free_port)
start_chatgate "/tmp/idle-$LABEL.log" "$BIN"
timeout 300 "$L" --target chatgate --secret "$SECRET" --url "http://127.0.0.1:$PORT" --label "$LABEL" \
  --server-pid "$PID" idle --conns "$CONNS" --per-room 2 || true
stop "$PID"
