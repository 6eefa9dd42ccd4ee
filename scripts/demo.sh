#!/usr/bin/env bash
# make demo: start a single-node dev agent on a free loopback port and walk
# through the foundation with peerctl and curl: members, service registration
# with a TTL check, catalog and health queries, and an exported-services
# config entry. Everything lives in .demo/ under the repository and is removed
# on exit, whatever the exit; the agent is stopped with SIGTERM.
#
# Needs bin/peerd and bin/peerctl (make build) and curl; python3, if present,
# pretty-prints JSON.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DEMO=.demo
START_TIMEOUT=20 # seconds for the agent to print its address and elect a leader
STOP_TIMEOUT=15  # seconds for the agent to exit after SIGTERM

for bin in bin/peerd bin/peerctl; do
	if [ ! -x "$bin" ]; then
		echo "demo: $bin not found: run make build (or make demo)" >&2
		exit 1
	fi
done
if ! command -v curl >/dev/null; then
	echo "demo: curl not found" >&2
	exit 1
fi

say() { printf '\n==> %s\n' "$*"; }
show() {
	printf '$ %s\n' "$*"
	"$@"
}
pretty() {
	if command -v python3 >/dev/null; then
		python3 -m json.tool
	else
		cat
		echo
	fi
}

agent_pid=""

# alive reports whether process $1 exists and is not a zombie (our own child
# stays a zombie until we wait for it, so kill -0 alone would say yes).
alive() {
	local state
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "$state" != Z ]
}

# stop_agent sends SIGTERM and waits up to STOP_TIMEOUT seconds, then
# SIGKILL. It returns the agent's exit status.
stop_agent() {
	local pid=$agent_pid status=0 deadline
	agent_pid=""
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + STOP_TIMEOUT))
	while alive "$pid" && ((SECONDS < deadline)); do
		sleep 0.1
	done
	if alive "$pid"; then
		echo "demo: peerd did not exit within ${STOP_TIMEOUT}s of SIGTERM; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || status=$?
	return "$status"
}

show_log() {
	local f
	for f in "$DEMO/peerd.out" "$DEMO/peerd.log"; do
		if [ -s "$f" ]; then
			echo "--- $f (last 30 lines) ---" >&2
			tail -n 30 "$f" >&2
		fi
	done
}

cleanup() {
	local status=$?
	set +e # clean up whatever fails below, even writing to a closed pipe
	trap - EXIT INT TERM
	trap '' PIPE
	stop_agent || true
	if [ "$status" -ne 0 ]; then
		echo "demo: failed (exit status $status)" >&2
		show_log
	fi
	rm -rf "$DEMO"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE

rm -rf "$DEMO"
mkdir -p "$DEMO"
: >"$DEMO/peerd.out"

say "start a dev agent: bin/peerd agent -dev -http-addr 127.0.0.1:0 -log-level warn"
bin/peerd agent -dev -http-addr 127.0.0.1:0 -log-level warn \
	>"$DEMO/peerd.out" 2>"$DEMO/peerd.log" </dev/null &
agent_pid=$!

# Wait for the "http: 127.0.0.1:PORT" line, then for a leader.
PEERD_HTTP_ADDR=""
leader=""
printf 'waiting for the agent'
deadline=$((SECONDS + START_TIMEOUT))
tick=0
while :; do
	if ! alive "$agent_pid"; then
		echo
		status=0
		wait "$agent_pid" || status=$?
		agent_pid=""
		echo "demo: peerd exited during startup with status $status" >&2
		exit 1
	fi
	if [ -z "$PEERD_HTTP_ADDR" ]; then
		PEERD_HTTP_ADDR=$(sed -n -E '/^[[:space:]]*http:[[:space:]]/{s/^[[:space:]]*http:[[:space:]]+([^[:space:]]+).*/\1/p;q;}' \
			"$DEMO/peerd.out")
		PEERD_HTTP_ADDR=${PEERD_HTTP_ADDR#http://}
	fi
	if [ -n "$PEERD_HTTP_ADDR" ]; then
		leader=$(curl -fsS --max-time 2 "http://$PEERD_HTTP_ADDR/v1/status/leader" 2>/dev/null || true)
		if [ -n "$leader" ] && [ "$leader" != '""' ]; then
			break
		fi
	fi
	if ((SECONDS >= deadline)); then
		echo
		if [ -z "$PEERD_HTTP_ADDR" ]; then
			echo "demo: peerd printed no 'http: ADDR' line within ${START_TIMEOUT}s" >&2
		else
			echo "demo: no leader at http://$PEERD_HTTP_ADDR within ${START_TIMEOUT}s" >&2
		fi
		exit 1
	fi
	if ((tick++ % 4 == 0)); then
		printf '.'
	fi
	sleep 0.25
done
echo " ready"
export PEERD_HTTP_ADDR
URL="http://$PEERD_HTTP_ADDR"
echo "PEERD_HTTP_ADDR=$PEERD_HTTP_ADDR (peerctl reads it), leader $leader"

say "the cluster's members"
show bin/peerctl members

say "register a service from $DEMO/web.hcl"
cat >"$DEMO/web.hcl" <<'EOF'
service {
  name = "web"
  port = 8080
  tags = ["v1"]
  meta = {
    version = "1"
  }
  check {
    ttl = "30s"
  }
}
EOF
cat "$DEMO/web.hcl"
show bin/peerctl services register "$DEMO/web.hcl"

say "mark its TTL check passing"
show curl -fsS -o /dev/null -X PUT "$URL/v1/agent/check/pass/service:web"
echo "check service:web is passing"

say "the catalog's services and nodes"
show bin/peerctl catalog services
show bin/peerctl catalog nodes

say "healthy instances of web"
printf '$ curl -s %s | python3 -m json.tool\n' "$URL/v1/health/service/web?passing"
curl -fsS "$URL/v1/health/service/web?passing" | pretty

say "export web to the peer cluster-b with an exported-services config entry"
cat >"$DEMO/exported-services.hcl" <<'EOF'
Kind = "exported-services"
Name = "default"
Services = [
  {
    Name = "web"
    Consumers = [
      {
        Peer = "cluster-b"
      }
    ]
  }
]
EOF
cat "$DEMO/exported-services.hcl"
show bin/peerctl config write "$DEMO/exported-services.hcl"

say "read it back"
show bin/peerctl config read -kind exported-services -name default

say "list exported-services entries as JSON"
show bin/peerctl config list -kind exported-services -format json

say "stop the agent (SIGTERM)"
status=0
stop_agent || status=$?
if [ "$status" -ne 0 ]; then
	echo "demo: peerd exited with status $status after SIGTERM" >&2
	exit 1
fi
echo "peerd stopped cleanly"

say "done"
