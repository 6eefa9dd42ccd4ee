package catalog

import (
	"testing"

	"github.com/peerd/peerd/catalog/state"
)

func newTestStore(t testing.TB) *state.Store {
	t.Helper()
	s, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func reg(node, svc string, checks ...*state.HealthCheck) *state.RegisterRequest {
	r := &state.RegisterRequest{Node: &state.Node{Node: node, Address: "10.0.0.1"}, Checks: checks}
	if svc != "" {
		r.Service = &state.Service{ID: svc, Service: svc, Port: 80}
	}
	return r
}

func imported(peer, node, svc string) *state.RegisterRequest {
	return &state.RegisterRequest{PeerName: peer, Node: &state.Node{Node: node, Address: "10.9.9.9"},
		Service: &state.Service{ID: svc + "-1", Service: svc, Port: 8080}}
}
