package agent

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
	dto "github.com/prometheus/client_model/go"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/dataplane"
)

// TestDesiredDataplane: the desired state read from a catalog with two
// peerings (one without imports), imported services with gateways, virtual
// IPs and this node's instances; and the watch set fires when a peering
// goes.
func TestDesiredDataplane(t *testing.T) {
	st, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	idx := uint64(0)
	must := func(err error) {
		t.Helper()
		idx++
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.PeeringWrite(idx+1, &state.PeeringWriteRequest{Peering: &state.Peering{
		ID: "11111111-1111-4111-8111-111111111111", Name: "b", State: state.PeeringActive,
		PeerServerAddresses: []string{"10.0.0.1:8503", "[fd00::1]:8503", "not-an-address"},
	}}))
	must(st.PeeringWrite(idx+1, &state.PeeringWriteRequest{Peering: &state.Peering{
		ID: "22222222-2222-4222-8222-222222222222", Name: "idle", State: state.PeeringActive,
	}}))
	imported := func(node, id, svc, gw string) *state.RegisterRequest {
		return &state.RegisterRequest{PeerName: "b",
			Node: &state.Node{Node: node, Address: "192.0.2.1", PeerName: "b"},
			Service: &state.Service{ID: id, Service: svc, Port: 8080, PeerName: "b",
				TaggedAddresses: map[string]state.ServiceAddress{state.TaggedAddressGateway: {Address: gw, Port: 8443}}}}
	}
	must(st.Register(idx+1, imported("b-n1", "billing-1", "billing", "10.0.0.7")))
	must(st.Register(idx+1, imported("b-n2", "billing-2", "billing", "::ffff:10.0.0.8")))
	must(st.Register(idx+1, imported("b-n1", "db-1", "db", "")))
	must(st.VirtualIPsUpdate(idx+1, &state.VirtualIPsRequest{Assign: []*state.VirtualIP{
		{Peer: "b", Service: "billing", IPv4: "240.0.0.1", IPv6: "fd10::1"},
		{Peer: "b", Service: "db", IPv4: "240.0.0.2"},
	}}))
	local := func(node, id string, port int, kind string) *state.RegisterRequest {
		return &state.RegisterRequest{Node: &state.Node{Node: node, Address: "127.0.0.1"},
			Service: &state.Service{ID: id, Service: id, Port: port, Kind: kind}}
	}
	must(st.Register(idx+1, local("me", "web", 8080, "")))
	must(st.Register(idx+1, local("me", "web-2", 8080, ""))) // same port: once
	must(st.Register(idx+1, local("me", "api", 9090, "")))
	must(st.Register(idx+1, local("me", "nope", 0, "")))
	must(st.Register(idx+1, local("me", "gw", 8443, "mesh-gateway")))
	must(st.Register(idx+1, local("other", "elsewhere", 7070, "")))

	vips := map[netip.Addr]dataplane.VIPTarget{
		netip.MustParseAddr("240.0.0.1"): {Peer: "b", Service: "billing"},
		netip.MustParseAddr("fd10::1"):   {Peer: "b", Service: "billing"},
		netip.MustParseAddr("240.0.0.2"): {Peer: "b", Service: "db"},
	}
	tests := []struct {
		name  string
		wants dataplaneWants
		addrs map[netip.Addr]string
		ports []uint16
	}{
		{name: "capture only", wants: dataplaneWants{node: "me"}},
		{name: "with TC", wants: dataplaneWants{node: "me", peerAddrs: true}, addrs: map[netip.Addr]string{
			netip.MustParseAddr("10.0.0.1"): "b", netip.MustParseAddr("fd00::1"): "b",
			netip.MustParseAddr("10.0.0.7"): "b", netip.MustParseAddr("10.0.0.8"): "b",
		}},
		{name: "with the fast path", wants: dataplaneWants{node: "me", fastPorts: true}, ports: []uint16{8080, 9090}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := desiredDataplane(memdb.NewWatchSet(), st, tt.wants)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got.VIPs, vips) {
				t.Errorf("VIPs: got %v, want %v", got.VIPs, vips)
			}
			if peers := slices.Sorted(slices.Values(got.Peers)); !slices.Equal(peers, []string{"b", "idle"}) {
				t.Errorf("peers: got %q, want b and idle", peers)
			}
			if len(got.PeerAddrs) != len(tt.addrs) || !maps.Equal(got.PeerAddrs, tt.addrs) {
				t.Errorf("peer addresses: got %v, want %v", got.PeerAddrs, tt.addrs)
			}
			if !slices.Equal(got.FastPathPorts, tt.ports) {
				t.Errorf("fast-path ports: got %v, want %v", got.FastPathPorts, tt.ports)
			}
		})
	}

	ws := memdb.NewWatchSet()
	if _, err := desiredDataplane(ws, st, dataplaneWants{node: "me", peerAddrs: true, fastPorts: true}); err != nil {
		t.Fatal(err)
	}
	if err := st.PeeringDelete(idx+1, "idle"); err != nil {
		t.Fatal(err)
	}
	if ws.Watch(time.After(5 * time.Second)) {
		t.Fatal("deleting a peering did not fire the watch set in 5 s")
	}
	got, err := desiredDataplane(memdb.NewWatchSet(), st, dataplaneWants{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Peers, []string{"b"}) {
		t.Errorf("peers after deleting idle: got %q, want [b]", got.Peers)
	}
}

// TestDataplaneSyncErrorsCounted: a failed Sync counts once per failed map
// in peerd_dataplane_sync_errors_total, anything else as "dataplane".
func TestDataplaneSyncErrorsCounted(t *testing.T) {
	s := newDataplaneSync(&Agent{})
	s.count(&dataplane.SyncError{Maps: map[string]error{
		dataplane.SyncVIPs:      errors.New("map full"),
		dataplane.SyncPeerAddrs: errors.New("map full"),
	}})
	s.count(fmt.Errorf("wrapped: %w", &dataplane.SyncError{Maps: map[string]error{dataplane.SyncVIPs: errors.New("map full")}}))
	s.count(errors.New("sync the dataplane: dataplane closed"))
	want := map[string]float64{"dataplane": 1, "peer_addresses": 1, "virtual_ips": 2, "fastpath_ports": 0}
	for label, n := range want {
		var m dto.Metric
		if err := s.errors.WithLabelValues(label).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != n {
			t.Errorf("peerd_dataplane_sync_errors_total{maps=%q}: got %v, want %v", label, got, n)
		}
	}
}
