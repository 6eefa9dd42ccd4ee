# Example config for a peerd server node: /etc/peerd.d/peerd.hcl, read by
# `peerd agent -config-dir /etc/peerd.d` (deploy/systemd/peerd.service).
# Every *.hcl and *.json file in that directory is read in name order; flags
# on the command line override files. Keys follow Consul's agent config.
#
# The 10.0.0.x addresses are documentation examples: put your servers' own
# addresses here. Client (non-server) nodes drop server and use a client
# token.

datacenter = "dc1"
data_dir   = "/var/lib/peerd"

# One of 3 servers. Cluster trust is on by default: the first server of a
# new cluster has `bootstrap_expect = 1` and no join token, and makes the
# cluster's CA; every other node is admitted with a join token made on it
# (`peerd join-token create -role server -out /etc/peerd.d/server.token`),
# which carries the servers to join and the gossip key, and becomes a voter
# once stable. Comment out join_token_file on the first server.
server          = true
join_token_file = "/etc/peerd.d/server.token"
# bootstrap_expect = 1   # the first server only

# This node's own address for gossip and raft.
bind_addr = "10.0.0.12"

# Gossip encryption key, the same on every node of the cluster: replace with
# the output of `peerd keygen`. The agent refuses to start until you do. It
# is only the first key: rotations (peerctl keyring) are kept in
# /var/lib/peerd/keyring, which wins over this line on restart.
encrypt = "REPLACE-WITH-OUTPUT-OF-peerd-keygen"

ports {
  http     = 8500 # HTTP API (peerctl, Consul API clients)
  grpc     = 8502 # internal gRPC: writes forwarded to the leader, peering management
  grpc_tls = 8503 # TLS gRPC: the peering stream other clusters dial (servers)
  gateway  = 8443 # the node's mTLS gateway: peers and other nodes reach this node's services here
  serf_lan = 8301 # gossip, TCP and UDP
  server   = 8300 # raft, servers only
}

# Internal gRPC and TLS gRPC listen on bind_addr; the HTTP API on 127.0.0.1
# only (reads on a follower or a client are relayed to the leader over the
# internal gRPC port, mutual TLS).

# ACLs are on outside -dev with default_policy "deny" (written here to be
# explicit): every HTTP API call and DNS answer needs a token that allows
# it. The tokens are secrets: keep them in a file of their own, readable
# only by peerd (/etc/peerd.d/acl-tokens.hcl, mode 0640 group peerd; see
# README.md). Tokens set later with `PUT /v1/agent/token/...` are kept in
# /var/lib/peerd/acl-tokens.json (0600) and win on restart.
acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
}

# The HTTP API's /metrics needs a token with agent:read. For a scraper
# without one, serve /metrics on a private address of its own:
# telemetry {
#   prometheus_addr = "10.0.0.12:9102"
# }

log_level = "info"
