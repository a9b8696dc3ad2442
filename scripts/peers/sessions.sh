#!/usr/bin/env bash
# usage: sessions.sh BIN N -> RSS delta per session after ingesting N ParticipantsUpdated
# (SETTLE: seconds to wait before reading VmRSS, default 0.5)
set -euo pipefail
BIN=$1 N=${2:-5000}
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
SECRET=peers-chatgate-secret-0123456789abcdef0123
python3 - "$N" > /tmp/sess.ndjson <<'PY'
import json,sys
n=int(sys.argv[1])
for i in range(n):
    print(json.dumps({"notificationType":"ParticipantsUpdated","messageType":"FacebooksessionStateChangeMessage","facebooksession":{"id":f"s-{i}","state":"Chatting","participants":[{"participantId":f"c-{i}","id":f"c-{i}","type":"Customer","nickname":f"Customer {i}","visibility":"All"},{"participantId":f"a-{i}","id":f"a-{i}","type":"Agent","nickname":f"Agent {i}","visibility":"All"}]}}))
PY
TOKEN=$(python3 -c "
import hmac,hashlib,base64,json,time
b=lambda x: base64.urlsafe_b64encode(x).rstrip(b'=').decode()
h=b(json.dumps({'alg':'HS256','typ':'JWT'}).encode()); p=b(json.dumps({'sub':'up','role':'service','exp':int(time.time())+600}).encode())
print(h+'.'+p+'.'+b(hmac.new(b'$SECRET',(h+'.'+p).encode(),hashlib.sha256).digest()))")
CHATGATE_LISTEN=127.0.0.1:$PORT CHATGATE_JWT_SECRET=$SECRET RUST_LOG=warn $BIN >/tmp/sess.log 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:$PORT/healthz && break; sleep 0.1; done
sleep 0.5
B=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $TOKEN" -H 'content-type: application/x-ndjson' --data-binary @/tmp/sess.ndjson http://127.0.0.1:$PORT/upstream/events
sleep ${SETTLE:-0.5}
A=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
curl -s http://127.0.0.1:$PORT/metrics | grep -E '^chatgate_(retained_bytes|sessions) ' || true
echo "rss before $B after $A per session $(( (A-B)*1024/N )) B"
kill $PID; wait $PID 2>/dev/null || true
