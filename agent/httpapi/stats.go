package httpapi

import (
	"runtime"
	"strconv"
)

// agentStats is the Stats of /v1/agent/self, the sections `consul info`
// prints, every value a string as in Consul: agent (this agent's services
// and checks), build, consul (role, leader, ACLs), raft (hashicorp/raft's
// own statistics; servers only), serf_lan (the gossip pool) and runtime.
func (s *Server) agentStats() map[string]map[string]string {
	var ttls int
	localChecks := s.local.Checks()
	for _, c := range localChecks {
		if c.Type == "ttl" {
			ttls++
		}
	}
	acls := "disabled"
	if s.acl != nil && s.acl.Enabled() {
		acls = "enabled"
	}
	leaderAddr := ""
	if m, ok := s.cluster.LeaderMember(); ok {
		leaderAddr = m.Meta.RaftAddr
	}
	out := map[string]map[string]string{
		"agent": {
			"services":       strconv.Itoa(len(s.local.Services())),
			"checks":         strconv.Itoa(len(localChecks)),
			"check_ttls":     strconv.Itoa(ttls),
			"check_monitors": "0", // peerd runs no script checks
		},
		"build": {"version": s.version, "revision": "", "prerelease": "", "version_metadata": ""},
		"consul": {
			"server":            strconv.FormatBool(s.cluster.IsServer()),
			"leader":            strconv.FormatBool(s.cluster.IsLeader()),
			"leader_addr":       leaderAddr,
			"bootstrap":         "false",
			"known_datacenters": "1",
			"acl":               acls,
		},
		"serf_lan": s.cluster.GossipStats(),
		"runtime": {
			"os": runtime.GOOS, "arch": runtime.GOARCH, "version": runtime.Version(),
			"cpu_count":  strconv.Itoa(runtime.NumCPU()),
			"max_procs":  strconv.Itoa(runtime.GOMAXPROCS(0)),
			"goroutines": strconv.Itoa(runtime.NumGoroutine()),
		},
	}
	if rs := s.cluster.RaftStats(); rs != nil {
		out["raft"] = rs
	}
	return out
}

// Consul's protocol versions, which `consul members` shows (Protocol) from
// the vsn tags: peerd's API follows protocol 2, as Consul 1.x agents do.
const (
	consulProtocol    = "2"
	consulProtocolMin = "2"
	consulProtocolMax = "3"
	// raftProtocol is hashicorp/raft's protocol version peerd's servers
	// speak (raft.ProtocolVersionMax).
	raftProtocol = "3"
)
