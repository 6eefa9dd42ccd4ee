package peering

import (
	"fmt"
	"slices"
	"sort"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
)

// ExportedService is one local service and the peers it is exported to.
type ExportedService struct {
	Service string
	Peers   []string
}

// exportedServices reads the exported-services entry and the catalog and
// returns every exported service with its consumer peers, sorted by name.
// A "*" name expands to every typical local service plus every discovery
// chain (a service with a router, splitter or resolver), as in Consul; an
// exact entry for a service wins over the wildcard. Partition and
// sameness-group consumers are not peers and are skipped.
func exportedServices(ws memdb.WatchSet, st *state.Store) (uint64, []ExportedService, error) {
	idx, raw, err := st.ConfigEntry(ws, configentry.ExportedServices, configentry.DefaultPartition)
	if err != nil {
		return 0, nil, fmt.Errorf("read exported-services: %w", err)
	}
	entry, _ := raw.(*configentry.ExportedServicesConfigEntry)
	if entry == nil {
		return idx, nil, nil
	}
	exact := map[string][]string{}
	var wildcard []string
	for _, svc := range entry.Services {
		var peers []string
		for _, c := range svc.Consumers {
			if c.Peer != "" {
				peers = append(peers, c.Peer)
			}
		}
		if svc.Name == configentry.WildcardSpecifier {
			wildcard = append(wildcard, peers...)
		} else {
			exact[svc.Name] = append(exact[svc.Name], peers...)
		}
	}
	out := map[string][]string{}
	for name, peers := range exact {
		out[name] = peers
	}
	if len(wildcard) > 0 {
		sidx, names, err := localServiceNames(ws, st)
		if err != nil {
			return 0, nil, err
		}
		idx = max(idx, sidx)
		for _, name := range names {
			if _, ok := exact[name]; !ok {
				out[name] = wildcard
			}
		}
	}
	list := make([]ExportedService, 0, len(out))
	for name, peers := range out {
		peers = slices.Clone(peers)
		slices.Sort(peers)
		peers = slices.Compact(peers)
		if len(peers) > 0 {
			list = append(list, ExportedService{Service: name, Peers: peers})
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Service < list[j].Service })
	return idx, list, nil
}

// localServiceNames returns the names of typical local services (no proxies
// or gateways) and of discovery chains.
func localServiceNames(ws memdb.WatchSet, st *state.Store) (uint64, []string, error) {
	idx, typical, err := st.TypicalServiceNames(ws, "")
	if err != nil {
		return 0, nil, fmt.Errorf("list services: %w", err)
	}
	names := map[string]bool{}
	for _, name := range typical {
		names[name] = true
	}
	for _, kind := range []string{configentry.ServiceRouter, configentry.ServiceSplitter, configentry.ServiceResolver} {
		cidx, entries, err := st.ConfigEntries(ws, kind)
		if err != nil {
			return 0, nil, fmt.Errorf("list %s entries: %w", kind, err)
		}
		idx = max(idx, cidx)
		for _, e := range entries {
			names[e.GetName()] = true
		}
	}
	return idx, slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	}), nil
}

// exportsOf returns the sorted names of the services exported to peering
// p: none once it no longer replicates (DELETING or TERMINATED), whatever
// exported-services still says.
func exportsOf(list []ExportedService, p *catalog.Peering) []string {
	if p.State == catalog.PeeringDeleting || p.State == catalog.PeeringTerminated {
		return nil
	}
	return exportedTo(list, p.Name)
}

// exportedTo returns the sorted names of the services exported to peer.
func exportedTo(list []ExportedService, peer string) []string {
	var out []string
	for _, e := range list {
		if slices.Contains(e.Peers, peer) {
			out = append(out, e.Service)
		}
	}
	return out
}
