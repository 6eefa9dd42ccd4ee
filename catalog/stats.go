package catalog

import (
	"strconv"
)

// RaftStats returns hashicorp/raft's own statistics (state, term,
// last_log_index, applied_index, num_peers, …), the raft section of
// Consul's `consul info`; nil on a client node, which runs no raft.
func (c *Cluster) RaftStats() map[string]string {
	if c.raft == nil {
		return nil
	}
	return c.raft.Stats()
}

// GossipStats returns the LAN pool as this node sees it: member counts by
// status, memberlist's health score (0 is healthy) and whether gossip is
// encrypted, the serf_lan section of Consul's `consul info`.
func (c *Cluster) GossipStats() map[string]string {
	var alive, failed, left int
	for _, m := range c.Members() {
		switch m.Status {
		case StatusAlive:
			alive++
		case StatusFailed:
			failed++
		case StatusLeft, StatusLeaving:
			left++
		}
	}
	out := map[string]string{
		"members":   strconv.Itoa(alive + failed + left),
		"failed":    strconv.Itoa(failed),
		"left":      strconv.Itoa(left),
		"encrypted": strconv.FormatBool(c.GossipEncrypted()),
	}
	if c.ml != nil {
		out["health_score"] = strconv.Itoa(c.ml.GetHealthScore())
	}
	return out
}
