#!/usr/bin/env bash
# make demo: two independent clusters on this machine, each a dev agent on
# free loopback ports, peered with a one-time token. Cluster B runs
# "billing" (an HTTP echo server started here), exports it to cluster A and
# allows A's "web" with an intention; A's web calls billing through its
# explicit upstream: A's terminator -> mTLS -> B's gateway -> billing, which
# shows the identity B saw. The intention is switched to deny and the 403
# shown. Then B's health change reaches A, A deletes the peering, B sees it
# TERMINATED and A's imports are purged. Everything lives in .demo/ under
# the repository and is removed on exit, whatever the exit; the agents and
# the echo server are stopped with SIGTERM.
#
# Needs bin/peerd, bin/peerctl and bin/demo-echo (make demo builds them)
# and curl; python3, if present, pretty-prints JSON.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# PEERD_BIN and PEERD_DEMO_DIR let a test run the demo with binaries it
# built, in a directory of its own.
BIN=${PEERD_BIN:-bin}
DEMO=${PEERD_DEMO_DIR:-.demo}
START_TIMEOUT=20 # seconds for an agent to print its address and elect a leader
STOP_TIMEOUT=15  # seconds for an agent to exit after SIGTERM
WAIT_TIMEOUT=20  # seconds for each replication step

for bin in "$BIN/peerd" "$BIN/peerctl" "$BIN/demo-echo"; do
	if [ ! -x "$bin" ]; then
		echo "demo: $bin not found: run make demo" >&2
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

declare -A agent_pid=()
echo_pid=""

# alive reports whether process $1 exists and is not a zombie (our own child
# stays a zombie until we wait for it, so kill -0 alone would say yes).
alive() {
	local state
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "$state" != Z ]
}

# stop_agent NAME sends SIGTERM and waits up to STOP_TIMEOUT seconds, then
# SIGKILL. It returns the agent's exit status.
stop_agent() {
	local name=$1 pid status=0 deadline
	pid=${agent_pid[$name]:-}
	unset "agent_pid[$name]"
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + STOP_TIMEOUT))
	while alive "$pid" && ((SECONDS < deadline)); do
		sleep 0.1
	done
	if alive "$pid"; then
		echo "demo: agent $name did not exit within ${STOP_TIMEOUT}s of SIGTERM; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || status=$?
	return "$status"
}

show_logs() {
	local f
	for f in "$DEMO"/*.out "$DEMO"/*.log; do
		if [ -s "$f" ]; then
			echo "--- $f (last 30 lines) ---" >&2
			tail -n 30 "$f" >&2
		fi
	done
}

cleanup() {
	local status=$? name
	set +e # clean up whatever fails below, even writing to a closed pipe
	trap - EXIT INT TERM
	trap '' PIPE
	for name in "${!agent_pid[@]}"; do
		stop_agent "$name" || true
	done
	if [ -n "$echo_pid" ]; then
		kill -TERM "$echo_pid" 2>/dev/null || true
		wait "$echo_pid" 2>/dev/null || true
	fi
	if [ "$status" -ne 0 ]; then
		echo "demo: failed (exit status $status)" >&2
		show_logs
	fi
	rm -rf "$DEMO"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE

# start_agent NAME DC starts a dev agent and sets ADDR_<NAME> to its HTTP
# address once it has a leader.
start_agent() {
	local name=$1 dc=$2 addr="" leader="" deadline tick=0 pid status
	: >"$DEMO/$name.out"
	printf '$ bin/peerd agent -dev -node %s -datacenter %s -log-level warn\n' "$name" "$dc"
	"$BIN/peerd" agent -dev -node "$name" -datacenter "$dc" -log-level warn \
		>"$DEMO/$name.out" 2>"$DEMO/$name.log" </dev/null &
	pid=$!
	agent_pid[$name]=$pid
	printf 'waiting for %s' "$name"
	deadline=$((SECONDS + START_TIMEOUT))
	while :; do
		if ! alive "$pid"; then
			echo
			status=0
			wait "$pid" || status=$?
			unset "agent_pid[$name]"
			echo "demo: peerd ($name) exited during startup with status $status" >&2
			exit 1
		fi
		if [ -z "$addr" ]; then
			addr=$(sed -n -E '/^[[:space:]]*http:[[:space:]]/{s/^[[:space:]]*http:[[:space:]]+([^[:space:]]+).*/\1/p;q;}' \
				"$DEMO/$name.out")
			addr=${addr#http://}
		fi
		if [ -n "$addr" ]; then
			leader=$(curl -fsS --max-time 2 "http://$addr/v1/status/leader" 2>/dev/null || true)
			if [ -n "$leader" ] && [ "$leader" != '""' ]; then
				break
			fi
		fi
		if ((SECONDS >= deadline)); then
			echo
			echo "demo: $name has no leader (address '${addr}') within ${START_TIMEOUT}s" >&2
			exit 1
		fi
		if ((tick++ % 4 == 0)); then
			printf '.'
		fi
		sleep 0.25
	done
	echo " ready at $addr"
	printf -v "ADDR_$name" '%s' "$addr"
}

# until_ok DESCRIPTION CMD... retries CMD until it succeeds or WAIT_TIMEOUT.
until_ok() {
	local what=$1 deadline=$((SECONDS + WAIT_TIMEOUT))
	shift
	printf 'waiting until %s' "$what"
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			echo
			echo "demo: $what did not happen within ${WAIT_TIMEOUT}s" >&2
			exit 1
		fi
		printf '.'
		sleep 0.25
	done
	echo " yes"
}

rm -rf "$DEMO"
mkdir -p "$DEMO"

say "start two independent clusters (one dev agent each)"
start_agent a dc1
start_agent b dc2
ADDR_a=${ADDR_a:?} ADDR_b=${ADDR_b:?}
A=("$BIN/peerctl" -http-addr "$ADDR_a")
B=("$BIN/peerctl" -http-addr "$ADDR_b")

say "cluster B runs billing: an HTTP echo server on loopback"
printf '$ bin/demo-echo -name billing -listen 127.0.0.1:0 &\n'
"$BIN/demo-echo" -name billing -listen 127.0.0.1:0 >"$DEMO/echo.out" 2>"$DEMO/echo.log" </dev/null &
echo_pid=$!
echo_addr() { ECHO_ADDR=$(head -n 1 "$DEMO/echo.out"); [ -n "$ECHO_ADDR" ]; }
until_ok "billing listens" echo_addr
ECHO_PORT=${ECHO_ADDR##*:}
echo "billing listens on $ECHO_ADDR"

say "cluster B registers billing (from $DEMO/billing.hcl) and passes its TTL check"
printf '%s\n' 'service {' '  name = "billing"' '  address = "127.0.0.1"' "  port = $ECHO_PORT" '  tags = ["v1"]' '  check {' '    ttl = "5m"' '  }' '}' \
	>"$DEMO/billing.hcl"
cat "$DEMO/billing.hcl"
show "${B[@]}" services register "$DEMO/billing.hcl"
show curl -fsS -o /dev/null -X PUT "http://$ADDR_b/v1/agent/check/pass/service:billing?note=ok"

say "B generates a one-time peering token for cluster-a"
printf '$ %s peering generate-token -name cluster-a\n' "${B[*]}"
TOKEN=$("${B[@]}" peering generate-token -name cluster-a)
echo "${TOKEN:0:60}... (${#TOKEN} characters: CA roots, server addresses, server name, peer ID, secret)"

say "A establishes the peering with the token"
printf '$ %s peering establish -name cluster-b -peering-token "$TOKEN"\n' "${A[*]}"
"${A[@]}" peering establish -name cluster-b -peering-token "$TOKEN"
printf '$ %s peering establish -name cluster-b2 -peering-token <the same token>   # reuse is refused\n' "${A[*]}"
if "${A[@]}" peering establish -name cluster-b2 -peering-token "$TOKEN" 2>"$DEMO/reuse.err"; then
	echo "demo: a reused token was accepted" >&2
	exit 1
fi
cat "$DEMO/reuse.err"

say "B exports billing to cluster-a"
show "${B[@]}" services export -name billing -consumer-peers cluster-a
show "${B[@]}" config read -kind exported-services -name default

imported_passing() {
	curl -fsS "http://$ADDR_a/v1/health/service/billing?peer=cluster-b&passing" | grep -q '"billing"'
}
until_ok "A imports billing, passing" imported_passing

say "both sides of the peering"
show "${A[@]}" peering list
show "${B[@]}" peering list
show "${A[@]}" services imported-services
show "${A[@]}" peering read -name cluster-b

say "A's view of billing in cluster-b"
printf '$ curl -s %s | python3 -m json.tool\n' "http://$ADDR_a/v1/health/service/billing?peer=cluster-b"
curl -fsS "http://$ADDR_a/v1/health/service/billing?peer=cluster-b" | pretty

say "B: billing speaks HTTP; web from cluster-a may call it (service-intentions)"
printf '%s\n' 'Kind = "service-defaults"' 'Name = "billing"' 'Protocol = "http"' >"$DEMO/billing-defaults.hcl"
allow_or_deny() {
	printf '%s\n' 'Kind = "service-intentions"' 'Name = "billing"' 'Sources = [' \
		"  { Name = \"web\", Peer = \"cluster-a\", Action = \"$1\" }," ']' >"$DEMO/billing-intentions.hcl"
}
allow_or_deny allow
cat "$DEMO/billing-defaults.hcl" "$DEMO/billing-intentions.hcl"
show "${B[@]}" config write "$DEMO/billing-defaults.hcl"
show "${B[@]}" config write "$DEMO/billing-intentions.hcl"

say "cluster A registers web with an explicit upstream to billing in cluster-b"
UP_PORT=$("$BIN/demo-echo" -print-free-port)
printf '%s\n' 'service {' '  name = "web"' '  port = 8080' '  proxy {' '    upstreams = [{' \
	'      destination_peer = "cluster-b"' '      destination_name = "billing"' '      local_bind_address = "127.0.0.1"' \
	"      local_bind_port = $UP_PORT" '    }]' '  }' '}' >"$DEMO/web.hcl"
cat "$DEMO/web.hcl"
show "${A[@]}" services register "$DEMO/web.hcl"

say "web calls billing: 127.0.0.1:$UP_PORT -> A's terminator -> mTLS -> B's gateway -> billing"
through_upstream() { curl -fsS --max-time 3 "http://127.0.0.1:$UP_PORT/invoices/42" >"$DEMO/reply.json"; }
until_ok "the upstream answers" through_upstream
printf '$ curl -s http://127.0.0.1:%s/invoices/42\n' "$UP_PORT"
cat "$DEMO/reply.json"
CALLER=$(sed -n -E 's/.*"caller": "([^"]*)".*/\1/p' "$DEMO/reply.json")
if [ -z "$CALLER" ]; then
	echo "demo: billing saw no caller identity" >&2
	exit 1
fi
echo "billing (in cluster B) saw the caller: $CALLER"

say "B switches the intention to deny: web now gets 403"
allow_or_deny deny
show "${B[@]}" config write "$DEMO/billing-intentions.hcl"
denied() { [ "$(curl -s -o "$DEMO/denied.txt" -w '%{http_code}' --max-time 3 "http://127.0.0.1:$UP_PORT/invoices/42")" = 403 ]; }
until_ok "web is refused" denied
printf '$ curl -si http://127.0.0.1:%s/invoices/42\n' "$UP_PORT"
curl -si --max-time 3 "http://127.0.0.1:$UP_PORT/invoices/42" | tr -d '\r' | sed -n '1p;$p'
printf '$ curl -s http://%s/metrics | grep peerd_proxy_intention_denials_total\n' "$ADDR_b"
curl -fsS "http://$ADDR_b/metrics" | grep '^peerd_proxy_intention_denials_total'

say "billing fails its check in B; A sees it critical"
show curl -fsS -o /dev/null -X PUT "http://$ADDR_b/v1/agent/check/fail/service:billing?note=down"
imported_critical() {
	curl -fsS "http://$ADDR_a/v1/health/service/billing?peer=cluster-b" | grep -q '"critical"'
}
until_ok "A sees billing critical" imported_critical

say "A deletes the peering: B sees it TERMINATED and A's imports are purged"
show "${A[@]}" peering delete -name cluster-b
b_terminated() { "${B[@]}" peering read -name cluster-a -format json | grep -q '"TERMINATED"'; }
until_ok "B's peering is TERMINATED" b_terminated
a_purged() { [ "$(curl -fsS "http://$ADDR_a/v1/catalog/service/billing?peer=cluster-b")" = "[]" ]; }
until_ok "A's imports of cluster-b are gone" a_purged
show "${B[@]}" peering list

say "stop both agents and billing (SIGTERM)"
for name in a b; do
	status=0
	stop_agent "$name" || status=$?
	if [ "$status" -ne 0 ]; then
		echo "demo: agent $name exited with status $status after SIGTERM" >&2
		exit 1
	fi
done
kill -TERM "$echo_pid" && wait "$echo_pid" || true
echo_pid=""
echo "both agents and billing stopped cleanly"

say "done"
