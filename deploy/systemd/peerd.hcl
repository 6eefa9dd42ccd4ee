# Example config for a peerd server node: /etc/peerd.d/peerd.hcl, read by
# `peerd agent -config-dir /etc/peerd.d` (deploy/systemd/peerd.service).
# Every *.hcl and *.json file in that directory is read in name order; flags
# on the command line override files. Keys follow Consul's agent config.
#
# The 10.0.0.x addresses are documentation examples: put your servers' own
# addresses here. Client (non-server) nodes drop server and bootstrap_expect.

datacenter = "dc1"
data_dir   = "/var/lib/peerd"

# One of 3 servers (raft voters); the first leader is elected once all 3
# have joined.
server           = true
bootstrap_expect = 3

# Gossip address of a node to join, retried until it answers; list more than
# one server so any of them will do.
retry_join = ["10.0.0.11"]

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
# only. Reads on a follower or a client are relayed to the leader's HTTP
# API, so give it an address the other nodes reach (or read with ?stale):
# addresses {
#   http = "10.0.0.12"
# }

log_level = "info"
