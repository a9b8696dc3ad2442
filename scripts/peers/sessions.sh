#!/usr/bin/env bash
# usage: sessions.sh BIN N -> RSS delta per session after ingesting N ParticipantsUpdated
# (SETTLE: seconds to wait before reading VmRSS, default 0.5)
set -euo pipefail
source "$(dirname "$0")/common.sh"
BIN=$1 N=${2:-5000}
PORT=$(free_port)
python3 - "$N" > /tmp/sess.ndjson <<'PY'
import json,sys
n=int(sys.argv[1])
for i in range(n):
    print(json.dumps({"notificationType":"ParticipantsUpdated","messageType":"FacebooksessionStateChangeMessage","facebooksession":{"id":f"s-{i}","state":"Chatting","participants":[{"participantId":f"c-{i}","id":f"c-{i}","type":"Customer","nickname":f"Customer {i}","visibility":"All"},{"participantId":f"a-{i}","id":f"a-{i}","type":"Agent","nickname":f"Agent {i}","visibility":"All"}]}}))
PY
TOKEN=$(token up service)
start_chatgate /tmp/sess.log "$BIN"
sleep 0.5
B=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $TOKEN" -H 'content-type: application/x-ndjson' --data-binary @/tmp/sess.ndjson http://127.0.0.1:$PORT/upstream/events
sleep ${SETTLE:-0.5}
A=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
curl -s http://127.0.0.1:$PORT/metrics | grep -E '^chatgate_(retained_bytes|sessions) ' || true
echo "rss before $B after $A per session $(( (A-B)*1024/N )) B"
stop "$PID"
