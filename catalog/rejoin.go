package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// MembersFile is the file in DataDir that keeps the gossip addresses of
// the members last seen alive, so that a restarted node rejoins the pool
// at once (serf's snapshot does this for Consul). Without it a node with
// no -retry-join (a bootstrap server, a node admitted by a join token
// whose servers are down) waits for another member's periodic push-pull
// to find it, 30 s or more, and a server meanwhile relays to no leader.
const MembersFile = "gossip-members.json"

// rejoinInterval is the wait between rejoin attempts; rejoinFor bounds
// them: past it the node waits for -retry-join or for others to find it.
const (
	rejoinInterval = time.Second
	rejoinFor      = 5 * time.Minute
)

func (c *Config) membersPath() string {
	if c.InMemory || c.DataDir == "" {
		return ""
	}
	return filepath.Join(c.DataDir, MembersFile)
}

type membersSnapshot struct {
	// Addrs are host:port gossip addresses, sorted.
	Addrs []string `json:"addrs"`
}

// readMembersFile returns the addresses kept at path (none if the file
// does not exist).
func readMembersFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s membersSnapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w (delete it: it is rewritten from the pool)", path, err)
	}
	for _, a := range s.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("%s: address %q: %w (delete the file: it is rewritten from the pool)", path, a, err)
		}
	}
	return s.Addrs, nil
}

// aliveAddrs is the gossip addresses of the other members alive now.
func (c *Cluster) aliveAddrs() []string {
	var addrs []string
	for _, m := range c.Members() {
		if m.Name != c.cfg.NodeName && m.Status == StatusAlive {
			addrs = append(addrs, net.JoinHostPort(m.Addr, strconv.Itoa(m.Port)))
		}
	}
	slices.Sort(addrs)
	return addrs
}

// membersLoop keeps MembersFile up to date: after every change of the
// pool, the alive members, written (atomically) when they differ from
// what the file holds. An empty pool is not written, so a node that was
// alone for a while keeps the addresses it knew.
func (c *Cluster) membersLoop(path string, kept []string) {
	events := c.MemberEvents(c.ctx)
	for range events {
		addrs := c.aliveAddrs()
		if len(addrs) == 0 || slices.Equal(addrs, kept) {
			continue
		}
		b, _ := json.Marshal(membersSnapshot{Addrs: addrs})
		tmp := path + ".tmp"
		err := os.WriteFile(tmp, b, 0o600)
		if err == nil {
			err = os.Rename(tmp, path)
		}
		if err != nil {
			c.log.Warn("keep the gossip members for a rejoin after a restart", "file", path, "err", err)
			continue
		}
		kept = addrs
	}
}

// rejoinLoop joins the pool through the members kept in MembersFile, every
// rejoinInterval until one answers (or rejoinFor passes).
func (c *Cluster) rejoinLoop(addrs []string) {
	deadline := time.Now().Add(rejoinFor)
	for {
		n, err := c.Join(addrs...)
		if err == nil && n > 0 {
			c.log.Info("rejoined the members known before the restart", "contacted", n, "file", MembersFile)
			return
		}
		if time.Now().After(deadline) {
			c.log.Warn("could not rejoin any member known before the restart; waiting to be found", "addrs", addrs, "err", err)
			return
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(rejoinInterval):
		}
	}
}

// startRejoin starts membersLoop and, if MembersFile lists members,
// rejoinLoop.
func (c *Cluster) startRejoin() {
	path := c.cfg.membersPath()
	if path == "" {
		return
	}
	addrs, err := readMembersFile(path)
	if err != nil {
		c.log.Warn("read the gossip members kept before the restart", "err", err)
	}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.membersLoop(path, addrs) }()
	if len(addrs) > 0 {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.rejoinLoop(addrs) }()
	}
}
