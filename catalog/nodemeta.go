package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"unicode/utf8"
)

// Node metadata reaches this node from any member of the gossip pool (and,
// with -insecure-gossip, from anyone who can send it a packet), and decides
// where raft, gRPC and the HTTP relay connect: it is external input.
// ParseNodeMeta is its one decoder; a member whose metadata it refuses is
// treated as having none (no role, no addresses), and the refusal is logged
// and counted when the member's metadata arrives.

// Role values of NodeMeta.Role.
const (
	RoleServer = "server"
	RoleClient = "client"
)

// The listener and reason a refused node metadata is counted under in
// peerd_security_refusals_total.
const (
	ListenerGossip = "gossip"
	ReasonBadMeta  = "bad_meta"
)

// Bounds of NodeMeta's free-form fields. memberlist caps the whole
// metadata at 512 bytes; these keep a single field from taking it.
const (
	maxNodeIDLen = 128
	maxBuildLen  = 128
)

// ErrBadNodeMeta is wrapped by every error of ParseNodeMeta.
var ErrBadNodeMeta = errors.New("bad node metadata")

// ParseNodeMeta decodes and checks the metadata a member gossips: a JSON
// object (unknown fields are ignored, for newer builds) with an ID, a role
// of "server" or "client", a datacenter name, a printable build string, and
// addresses that are each empty or host:port with a port from 1 to 65535.
// Errors wrap ErrBadNodeMeta and name the field.
func ParseNodeMeta(b []byte) (NodeMeta, error) {
	var m NodeMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return NodeMeta{}, fmt.Errorf("%w: %v", ErrBadNodeMeta, err)
	}
	if err := m.validate(); err != nil {
		return NodeMeta{}, fmt.Errorf("%w: %v", ErrBadNodeMeta, err)
	}
	return m, nil
}

func (m *NodeMeta) validate() error {
	if m.ID == "" || len(m.ID) > maxNodeIDLen || !printable(m.ID) {
		return fmt.Errorf("id %q: want 1 to %d printable characters", m.ID, maxNodeIDLen)
	}
	if m.Role != RoleServer && m.Role != RoleClient {
		return fmt.Errorf("role %q: want %q or %q", m.Role, RoleServer, RoleClient)
	}
	if err := ValidateDatacenter(m.Datacenter); err != nil {
		return fmt.Errorf("dc: %v", err)
	}
	if len(m.Build) > maxBuildLen || !printable(m.Build) {
		return fmt.Errorf("build %q: want at most %d printable characters", m.Build, maxBuildLen)
	}
	for _, a := range []struct{ name, addr string }{
		{"raft", m.RaftAddr}, {"grpc", m.GRPCAddr}, {"grpc_tls", m.GRPCTLSAddr}, {"http", m.HTTPAddr},
	} {
		if a.addr == "" {
			continue
		}
		if err := validateMemberAddr(a.addr); err != nil {
			return fmt.Errorf("%s address %q: %v", a.name, a.addr, err)
		}
	}
	if m.RaftAddr != "" && m.Role != RoleServer {
		return fmt.Errorf("raft address %q on a %s: only servers have one", m.RaftAddr, m.Role)
	}
	return nil
}

// validateMemberAddr checks a gossiped address: host:port, the host an IP
// address or a DNS name, the port from 1 to 65535.
func validateMemberAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("port %q: want 1 to 65535", port)
	}
	if net.ParseIP(host) == nil && !dnsName(host) {
		return fmt.Errorf("host %q: want an IP address or a DNS name", host)
	}
	return nil
}

// dnsName reports whether s is a DNS name: labels of letters, digits and
// '-', not starting or ending with '-', each 1 to 63 long, 253 in all.
func dnsName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 || s[i-1] == '-' {
				return false
			}
			label = 0
		case c == '-':
			if label == 0 {
				return false
			}
			label++
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			label++
		default:
			return false
		}
		if label > 63 {
			return false
		}
	}
	return label > 0 && s[len(s)-1] != '-'
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
