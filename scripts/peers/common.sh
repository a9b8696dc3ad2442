# Sourced by the measurements here: they drive the load generator and the
# servers of ../shared/peers (built there first: see its README); PEERS_DIR
# names that directory.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
P=${PEERS_DIR:-$HERE/../../../shared/peers}
L=$P/target/release/loadgen
SECRET=peers-chatgate-secret-0123456789abcdef0123
ulimit -n 20000

free_port() {
  python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# token SUB ROLE: an HS256 JWT for SECRET, valid 10 minutes.
token() {
  python3 - "$1" "$2" "$SECRET" <<'PY'
import base64, hashlib, hmac, json, sys, time
sub, role, secret = sys.argv[1:]
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
head = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b(json.dumps({"sub": sub, "role": role, "exp": int(time.time()) + 600}).encode())
sig = b(hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
}

# start_chatgate LOG COMMAND...: runs COMMAND (chatgate, or a tool that
# runs it) as chatgate on PORT (set), output to LOG; sets PID and waits
# until /healthz answers.
start_chatgate() {
  local log=$1; shift
  CHATGATE_LISTEN=127.0.0.1:$PORT CHATGATE_JWT_SECRET=$SECRET \
    CHATGATE_MAX_CONNECTIONS_PER_ADDRESS=0 RUST_LOG=warn "$@" >"$log" 2>&1 &
  PID=$!
  wait_for "http://127.0.0.1:$PORT/healthz"
}

# wait_for URL: up to 30 s for a GET (or, with POST, an empty POST) to answer.
wait_for() {
  for _ in $(seq 300); do
    if [[ ${2:-GET} == POST ]]; then curl -s -o /dev/null -X POST --data-binary '' "$1" && return 0
    else curl -sf -o /dev/null "$1" && return 0; fi
    sleep 0.1
  done
  echo "no answer from $1" >&2; return 1
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
