#!/usr/bin/env bash
# usage: callgrind.sh LABEL BIN -> instructions per delivered frame (callgrind), fan-out to 200 sessions x 2
# at RATE notifications/s: counters zeroed once under way, dumped WINDOW s later.
set -euo pipefail
source "$(dirname "$0")/common.sh"
LABEL=$1 BIN=$2 RATE=${RATE:-1000} WINDOW=${WINDOW:-10}
PORT=$(free_port)
OUT=/tmp/cg-$LABEL; rm -rf $OUT; mkdir -p $OUT
start_chatgate "/tmp/cg-$LABEL.log" valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" "$BIN"
timeout 300 $L --target chatgate --secret $SECRET --url http://127.0.0.1:$PORT --label $LABEL --server-pid $PID fanout --rooms 200 --per-room 2 --rate $RATE --duration $((WINDOW+12)) --payload-bytes 100 --drain 20 >$OUT/load.json 2>/dev/null &
LP=$!
sleep 8
callgrind_control -z $PID >/dev/null
T0=$(date +%s.%N)
sleep $WINDOW
callgrind_control -d $PID >/dev/null
T1=$(date +%s.%N)
wait $LP || true
stop "$PID"
IR=$(grep -h "^summary:\|^totals:" $OUT/cg.*.1 2>/dev/null | head -1 | awk '{print $2}')
python3 -c "
import json
d=json.loads(open('$OUT/load.json').read().strip().splitlines()[-1])
w=$T1-$T0; frames=$RATE*2*w
print(json.dumps({'label':'$LABEL','instructions':$IR,'window_s':round(w,2),'frames_in_window':int(frames),'instr_per_frame':int($IR/frames),'delivered_frames_s':d['delivered_frames_s'],'lost':d['lost'],'dup':d['dup']}))"
