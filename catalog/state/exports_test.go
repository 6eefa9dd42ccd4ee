package state

import (
	"slices"
	"testing"

	"github.com/peerd/peerd/catalog/configentry"
)

func exportsEntry(t *testing.T, services string) *configentry.ExportedServicesConfigEntry {
	t.Helper()
	e, err := configentry.DecodeJSON([]byte(`{"Kind":"exported-services","Name":"default","Services":` + services + `}`))
	if err != nil {
		t.Fatal(err)
	}
	return e.(*configentry.ExportedServicesConfigEntry)
}

func TestExportsExactEntryBeatsWildcard(t *testing.T) {
	x := ResolveExports(exportsEntry(t, `[
		{"Name":"*","Consumers":[{"Peer":"east"},{"Peer":"north"}]},
		{"Name":"web","Consumers":[{"Peer":"west"},{"Peer":"west"},{"Partition":"p1"}]},
		{"Name":"db","Consumers":[{"Partition":"p1"}]}]`))
	tests := []struct {
		service string
		want    []string
	}{
		{"web", []string{"west"}},          // named: the wildcard's peers do not apply
		{"db", nil},                        // named without a peer: still shadows "*"
		{"api", []string{"east", "north"}}, // not named: the wildcard decides
		{"WEB", []string{"east", "north"}}, // names are exact
		{"anything", []string{"east", "north"}},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			if got := x.Peers(tt.service); !slices.Equal(got, tt.want) {
				t.Errorf("Peers: got %v, want %v", got, tt.want)
			}
			for _, peer := range []string{"east", "north", "west", "p1"} {
				if got, want := x.ExportedTo(tt.service, peer), slices.Contains(tt.want, peer); got != want {
					t.Errorf("ExportedTo(%q): got %v, want %v", peer, got, want)
				}
			}
		})
	}
	var none Exports
	if none.ExportedTo("web", "east") || len(none.Peers("web")) != 0 || ResolveExports(nil).ExportedTo("web", "east") {
		t.Error("no entry exports something")
	}
}

func TestExportedServices(t *testing.T) {
	st := newTestStore(t)
	register := func(idx uint64, svc, kind string) {
		t.Helper()
		if err := st.Register(idx, &RegisterRequest{Node: &Node{Node: "n1", Address: "10.0.0.1"},
			Service: &Service{ID: svc, Service: svc, Kind: kind}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, list, err := st.ExportedServices(nil); err != nil || len(list) != 0 {
		t.Fatalf("without an entry: got %v, %v; want nothing", list, err)
	}
	register(1, "web", "")
	register(2, "api", "")
	register(3, "web-sidecar-proxy", "connect-proxy")
	if _, err := st.ConfigSet(4, exportsEntry(t, `[
		{"Name":"*","Consumers":[{"Peer":"east"}]},
		{"Name":"web","Consumers":[{"Peer":"west"},{"Peer":"west"},{"Partition":"p1"}]},
		{"Name":"db","Consumers":[{"Peer":"east"}]}]`), false, 0); err != nil {
		t.Fatal(err)
	}
	idx, got, err := st.ExportedServices(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []ExportedService{
		{Service: "api", Peers: []string{"east"}},
		{Service: "db", Peers: []string{"east"}},
		{Service: "web", Peers: []string{"west"}},
	}
	if !slices.EqualFunc(got, want, func(a, b ExportedService) bool {
		return a.Service == b.Service && slices.Equal(a.Peers, b.Peers)
	}) {
		t.Fatalf("got %+v, want %+v (no proxies; web's exact entry wins over the wildcard)", got, want)
	}
	if idx != 4 {
		t.Errorf("got index %d, want 4", idx)
	}
	if to := ServicesExportedTo(got, "east"); !slices.Equal(to, []string{"api", "db"}) {
		t.Fatalf("exported to east: got %v, want [api db]", to)
	}
	// The gateway's answer and the exporter's list are the same rule.
	_, x, err := st.Exports(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"api", "db", "web"} {
		for _, peer := range []string{"east", "west"} {
			listed := slices.ContainsFunc(got, func(e ExportedService) bool { return e.Service == svc && slices.Contains(e.Peers, peer) })
			if x.ExportedTo(svc, peer) != listed {
				t.Errorf("%s to %s: gateway says %v, exporter lists %v", svc, peer, x.ExportedTo(svc, peer), listed)
			}
		}
	}
}
