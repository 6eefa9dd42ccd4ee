package peering

import (
	"testing"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
)

func TestExportedServices(t *testing.T) {
	st, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	reg := func(idx uint64, svc, kind string) {
		t.Helper()
		if err := st.Register(idx, &state.RegisterRequest{Node: &state.Node{Node: "n1", Address: "10.0.0.1"},
			Service: &state.Service{ID: svc, Service: svc, Kind: kind}}); err != nil {
			t.Fatal(err)
		}
	}
	reg(1, "web", "")
	reg(2, "api", "")
	reg(3, "web-sidecar-proxy", "connect-proxy")
	entry, err := configentry.DecodeJSON([]byte(`{"Kind":"exported-services","Name":"default","Services":[
		{"Name":"*","Consumers":[{"Peer":"east"}]},
		{"Name":"web","Consumers":[{"Peer":"west"},{"Peer":"west"},{"Partition":"p1"}]},
		{"Name":"db","Consumers":[{"Peer":"east"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ConfigSet(4, entry, false, 0); err != nil {
		t.Fatal(err)
	}
	_, got, err := exportedServices(nil, st)
	if err != nil {
		t.Fatal(err)
	}
	want := []ExportedService{
		{Service: "api", Peers: []string{"east"}},
		{Service: "db", Peers: []string{"east"}},
		{Service: "web", Peers: []string{"west"}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Service != want[i].Service || len(got[i].Peers) != len(want[i].Peers) || got[i].Peers[0] != want[i].Peers[0] {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if to := exportedTo(got, "east"); len(to) != 2 || to[0] != "api" || to[1] != "db" {
		t.Fatalf("exported to east: got %v, want [api db] (web's exact entry wins over the wildcard)", to)
	}
}
