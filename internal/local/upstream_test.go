package local

import (
	"strings"
	"testing"

	"github.com/peerd/peerd/catalog"
)

func TestUpstreamValidation(t *testing.T) {
	up := func(u catalog.Upstream) *catalog.ServiceDefinition {
		return &catalog.ServiceDefinition{Name: "web", Port: 8080, Proxy: &catalog.ProxyConfig{Upstreams: []catalog.Upstream{u}}}
	}
	ok := []*catalog.ServiceDefinition{
		up(catalog.Upstream{DestinationName: "billing", DestinationPeer: "cluster-b", LocalBindPort: 9191}),
		up(catalog.Upstream{DestinationName: "billing", LocalBindAddress: "::1", LocalBindPort: 9191}),
		up(catalog.Upstream{DestinationName: "billing", LocalBindSocketPath: "/run/billing.sock"}),
		{Name: "web", Connect: &catalog.Connect{SidecarService: &catalog.ServiceDefinition{Proxy: &catalog.ProxyConfig{
			Upstreams: []catalog.Upstream{{DestinationName: "billing", LocalBindPort: 9191}}}}}},
	}
	for i, def := range ok {
		if _, _, err := ServiceFromDefinition(def); err != nil {
			t.Errorf("valid definition %d refused: %v", i, err)
		}
	}
	bad := []struct {
		def  *catalog.ServiceDefinition
		want string
	}{
		{up(catalog.Upstream{LocalBindPort: 9191}), "Proxy.Upstreams[0].DestinationName"},
		{up(catalog.Upstream{DestinationName: "billing"}), "Proxy.Upstreams[0].LocalBindPort"},
		{up(catalog.Upstream{DestinationName: "billing", LocalBindPort: 70000}), "LocalBindPort"},
		{up(catalog.Upstream{DestinationName: "bil ling", LocalBindPort: 1}), "DestinationName"},
		{up(catalog.Upstream{DestinationName: "billing", DestinationPeer: "Cluster_B", LocalBindPort: 1}), "DestinationPeer"},
		{up(catalog.Upstream{DestinationName: "billing", DestinationPeer: "b", Datacenter: "dc2", LocalBindPort: 1}), "Datacenter"},
		{up(catalog.Upstream{DestinationName: "billing", LocalBindAddress: "localhost", LocalBindPort: 1}), "LocalBindAddress"},
		{up(catalog.Upstream{DestinationName: "billing", DestinationType: "mystery", LocalBindPort: 1}), "DestinationType"},
		{&catalog.ServiceDefinition{Name: "web", Proxy: &catalog.ProxyConfig{Upstreams: []catalog.Upstream{
			{DestinationName: "a", LocalBindPort: 9000}, {DestinationName: "b", LocalBindPort: 9000}}}}, "Proxy.Upstreams[1].LocalBindPort"},
	}
	for _, b := range bad {
		_, _, err := ServiceFromDefinition(b.def)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("got %v, want an error naming %s", err, b.want)
		}
	}
}
