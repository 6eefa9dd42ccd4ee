package local

import (
	"strings"
	"testing"

	"github.com/peerd/peerd/catalog/state"
)

func TestUpstreamValidation(t *testing.T) {
	up := func(u state.Upstream) *state.ServiceDefinition {
		return &state.ServiceDefinition{Name: "web", Port: 8080, Proxy: &state.ProxyConfig{Upstreams: []state.Upstream{u}}}
	}
	ok := []*state.ServiceDefinition{
		up(state.Upstream{DestinationName: "billing", DestinationPeer: "cluster-b", LocalBindPort: 9191}),
		up(state.Upstream{DestinationName: "billing", LocalBindAddress: "::1", LocalBindPort: 9191}),
		up(state.Upstream{DestinationName: "billing", LocalBindSocketPath: "/run/billing.sock"}),
		{Name: "web", Connect: &state.Connect{SidecarService: &state.ServiceDefinition{Proxy: &state.ProxyConfig{
			Upstreams: []state.Upstream{{DestinationName: "billing", LocalBindPort: 9191}}}}}},
	}
	for i, def := range ok {
		if _, _, err := ServiceFromDefinition(def); err != nil {
			t.Errorf("valid definition %d refused: %v", i, err)
		}
	}
	bad := []struct {
		def  *state.ServiceDefinition
		want string
	}{
		{up(state.Upstream{LocalBindPort: 9191}), "Proxy.Upstreams[0].DestinationName"},
		{up(state.Upstream{DestinationName: "billing"}), "Proxy.Upstreams[0].LocalBindPort"},
		{up(state.Upstream{DestinationName: "billing", LocalBindPort: 70000}), "LocalBindPort"},
		{up(state.Upstream{DestinationName: "bil ling", LocalBindPort: 1}), "DestinationName"},
		{up(state.Upstream{DestinationName: "billing", DestinationPeer: "Cluster_B", LocalBindPort: 1}), "DestinationPeer"},
		{up(state.Upstream{DestinationName: "billing", DestinationPeer: "b", Datacenter: "dc2", LocalBindPort: 1}), "Datacenter"},
		{up(state.Upstream{DestinationName: "billing", LocalBindAddress: "localhost", LocalBindPort: 1}), "LocalBindAddress"},
		{up(state.Upstream{DestinationName: "billing", DestinationType: "mystery", LocalBindPort: 1}), "DestinationType"},
		{&state.ServiceDefinition{Name: "web", Proxy: &state.ProxyConfig{Upstreams: []state.Upstream{
			{DestinationName: "a", LocalBindPort: 9000}, {DestinationName: "b", LocalBindPort: 9000}}}}, "Proxy.Upstreams[1].LocalBindPort"},
	}
	for _, b := range bad {
		_, _, err := ServiceFromDefinition(b.def)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("got %v, want an error naming %s", err, b.want)
		}
	}
}
