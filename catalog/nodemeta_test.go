package catalog

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestParseNodeMeta(t *testing.T) {
	good := `{"id":"5e3a4f0c-8b1d-4c2e-9f7a-0123456789ab","role":"server","dc":"dc1","build":"v1.2.3","raft":"10.0.0.1:8300","grpc":"10.0.0.1:8502","grpc_tls":"[fd00::1]:8503","http":"node-1.example:8500","newer":"ignored"}`
	tests := []struct {
		name, in, want string // want: "" = accepted, else in the error
	}{
		{"a server", good, ""},
		{"a client without addresses", `{"id":"x","role":"client","dc":"dc-2"}`, ""},
		{"not JSON", `{"id":`, "unexpected end"},
		{"not an object", `[]`, "cannot unmarshal"},
		{"empty", ``, "unexpected end"},
		{"no id", `{"role":"client","dc":"dc1"}`, "id"},
		{"a control character in the id", `{"id":"a\u0000b","role":"client","dc":"dc1"}`, "id"},
		{"no role", `{"id":"x","dc":"dc1"}`, "role"},
		{"another role", `{"id":"x","role":"leader","dc":"dc1"}`, "role"},
		{"a bad datacenter", `{"id":"x","role":"client","dc":"a b"}`, "dc"},
		{"no datacenter", `{"id":"x","role":"client"}`, "dc"},
		{"a raft address on a client", `{"id":"x","role":"client","dc":"dc1","raft":"10.0.0.1:8300"}`, "only servers"},
		{"no port", `{"id":"x","role":"server","dc":"dc1","raft":"10.0.0.1"}`, "raft address"},
		{"port 0", `{"id":"x","role":"client","dc":"dc1","grpc":"10.0.0.1:0"}`, "grpc address"},
		{"port too large", `{"id":"x","role":"client","dc":"dc1","http":"10.0.0.1:65536"}`, "http address"},
		{"an empty host", `{"id":"x","role":"client","dc":"dc1","http":":8500"}`, "host"},
		{"a URL for a host", `{"id":"x","role":"client","dc":"dc1","grpc_tls":"http://x:1"}`, "grpc_tls address"},
		{"a long build", `{"id":"x","role":"client","dc":"dc1","build":"` + strings.Repeat("b", 129) + `"}`, "build"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseNodeMeta([]byte(tt.in))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrBadNodeMeta) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %+v, %v; want an ErrBadNodeMeta naming %q", m, err, tt.want)
			}
			if m != (NodeMeta{}) {
				t.Fatalf("got %+v with the error, want the zero NodeMeta", m)
			}
		})
	}
}

// metaCluster is a cluster member that is never started: enough to feed
// gossip events to.
func metaCluster(t testing.TB) *Cluster {
	t.Helper()
	cfg := DevConfig()
	cfg.NodeName, cfg.NodeID, cfg.Logger = "self", "5e3a4f0c-8b1d-4c2e-9f7a-0123456789ab", slog.New(slog.DiscardHandler)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBadNodeMetaIsRefused checks that a member gossiping metadata that
// does not parse is counted, and is seen without role or addresses, so
// nothing treats it as a server or connects to what it claims.
func TestBadNodeMetaIsRefused(t *testing.T) {
	c := metaCluster(t)
	refused := c.cfg.Refusals.vec.WithLabelValues(ListenerGossip, ReasonBadMeta)
	ev := &gossipEvents{c: c}
	ev.NotifyJoin(&memberlist.Node{Name: "good", Addr: net.IPv4(10, 0, 0, 2), Port: 8301,
		Meta: []byte(`{"id":"g","role":"server","dc":"dc1","raft":"10.0.0.2:8300","grpc":"10.0.0.2:8502"}`)})
	if got := counterValue(t, refused); got != 0 {
		t.Fatalf("a good member's metadata: got %v refusals, want 0", got)
	}
	ev.NotifyJoin(&memberlist.Node{Name: "evil", Addr: net.IPv4(10, 0, 0, 3), Port: 8301,
		Meta: []byte(`{"id":"e","role":"server","dc":"dc1","raft":"10.0.0.3:8300","grpc":"10.0.0.3"}`)})
	if got := counterValue(t, refused); got != 1 {
		t.Fatalf("got %v refusals, want 1", got)
	}
	servers := c.Servers()
	if len(servers) != 1 || servers[0].Name != "good" || servers[0].Meta.GRPCAddr != "10.0.0.2:8502" {
		t.Fatalf("got servers %+v, want only good", servers)
	}
	for _, m := range c.Members() {
		if m.Name == "evil" && (m.Meta != NodeMeta{} || m.Status != StatusAlive) {
			t.Fatalf("evil: got %+v, want an alive member without metadata", m)
		}
	}
}

// FuzzParseNodeMeta feeds the gossip metadata decoder, and a cluster
// member's event path, what any member of the pool may gossip. Neither may
// panic; accepted metadata keeps its rules through a round trip, and a
// member is a server only with metadata that parses as one.
func FuzzParseNodeMeta(f *testing.F) {
	for _, s := range []string{
		`{"id":"5e3a4f0c-8b1d-4c2e-9f7a-0123456789ab","role":"server","dc":"dc1","build":"v1","raft":"10.0.0.1:8300","grpc":"10.0.0.1:8502","grpc_tls":"10.0.0.1:8503","http":"10.0.0.1:8500"}`,
		`{"id":"x","role":"client","dc":"dc1","grpc":"[::1]:8502","leaving":true}`,
		`{"id":"x","role":"server","dc":"dc1","raft":"host.example:1"}`,
		`{"id":"x","role":"server","dc":"dc1","raft":"10.0.0.1"}`,
		`{"id":1}`, `null`, `{}`, ``,
	} {
		f.Add([]byte(s))
	}
	c := metaCluster(f)
	ev := &gossipEvents{c: c}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseNodeMeta(data)
		if err != nil {
			if !errors.Is(err, ErrBadNodeMeta) {
				t.Fatalf("ParseNodeMeta: %v does not wrap ErrBadNodeMeta", err)
			}
		} else {
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseNodeMeta(b)
			if err != nil || back != m {
				t.Fatalf("ParseNodeMeta(%q) = %+v, whose encoding parses as %+v, %v", data, m, back, err)
			}
		}
		n := &memberlist.Node{Name: "fuzzed", Addr: net.IPv4(10, 0, 0, 9), Port: 8301, Meta: data}
		ev.NotifyJoin(n)
		for _, s := range c.Servers() {
			if s.Name == "fuzzed" && (err != nil || m.Role != RoleServer) {
				t.Fatalf("metadata %q (%v) made a server", data, err)
			}
		}
		ev.NotifyLeave(n)
	})
}
