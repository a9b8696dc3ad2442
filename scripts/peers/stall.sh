#!/usr/bin/env bash
# usage: stall.sh LABEL BIN SUPERVISORS -> live traffic on 500 sessions at 1000/s while
# SUPERVISORS supervisors connect (one after another) to a hub of 10,000 more sessions of 20 lines
set -euo pipefail
source "$(dirname "$0")/common.sh"
LABEL=$1 BIN=$2 SUPS=${3:-3}
PORT=$(free_port)
start_chatgate "/tmp/stall-$LABEL.log" "$BIN"
SVC=$(token up service)
python3 - <<'PY'
import json
out=open('/tmp/stall.ndjson','w')
for i in range(10000):
    out.write(json.dumps({"notificationType":"ParticipantsUpdated","messageType":"FacebooksessionStateChangeMessage","facebooksession":{"id":f"x-{i}","state":"Chatting","participants":[{"participantId":f"xc-{i}","id":f"xc-{i}","type":"Customer","nickname":f"Customer {i}","visibility":"All"},{"participantId":f"xa-{i}","id":f"xa-{i}","type":"Agent","nickname":f"Agent {i}","visibility":"All"}]}})+"\n")
    for k in range(20):
        out.write(json.dumps({"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":f"/facebooksessions/x-{i}","messages":[{"index":k+1,"type":"Text","from":{"participantId":f"xc-{i}","id":f"xc-{i}","type":"Customer","nickname":f"Customer {i}","visibility":"All"},"visibility":"All","text":"a line of a customer, about one hundred characters long, as in the fan-out benchmark here","timestamp":1700000000000,"timestampSeconds":1700000000}]})+"\n")
PY
split -l 21000 /tmp/stall.ndjson /tmp/stall-part-
for f in /tmp/stall-part-*; do curl -s -o /dev/null -w '' -H "Authorization: Bearer $SVC" -H 'content-type: application/x-ndjson' --data-binary @$f http://127.0.0.1:$PORT/upstream/events; done
rm -f /tmp/stall-part-*
curl -s http://127.0.0.1:$PORT/metrics | grep -E '^chatgate_(sessions|retained_bytes) ' || true
curl -s http://127.0.0.1:$PORT/metrics | grep -E 'hub_lock_hold_seconds_bucket' | awk '{print $1, $2}' > /tmp/stall-hold-before.txt || true
timeout 120 $L --target chatgate --secret $SECRET --url http://127.0.0.1:$PORT --label $LABEL --server-pid $PID fanout --rooms 500 --per-room 2 --rate 1000 --duration 14 --payload-bytes 100 >/tmp/stall-$LABEL.json 2>/dev/null &
LP=$!
sleep 5
SUP=$(token sup supervisor)
for s in $(seq $SUPS); do WS_MODULE=$P/node-ws/node_modules/ws node $HERE/super.js ws://127.0.0.1:$PORT $SUP || true; done
wait $LP || true
python3 -c "
import json; d=json.loads(open('/tmp/stall-$LABEL.json').read().strip().splitlines()[-1])
print(json.dumps({k:d[k] for k in ('label','delivered_frames_s','p50_ms','p99_ms','p999_ms','max_ms','lost','dup')}))"
curl -s http://127.0.0.1:$PORT/metrics | grep -E 'hub_lock_hold_seconds_bucket' | awk '{print $1, $2}' > /tmp/stall-hold-after.txt || true
echo "lock holds during the live phase (count per upper bound, cumulative):"
paste -d' ' /tmp/stall-hold-before.txt /tmp/stall-hold-after.txt | awk '{print $1, $4-$2}' | sed 's/chatgate_hub_lock_hold_seconds_bucket//' | tr '\n' ' '; echo
stop "$PID"
