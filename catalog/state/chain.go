package state

import (
	"fmt"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog/configentry"
)

// l7Protocol reports whether routers and splitters may act on a protocol.
func l7Protocol(p string) bool {
	return p == "http" || p == "http2" || p == "grpc"
}

// protocolOf returns a service's effective protocol inside tx, as it would be
// with the entry override in place of the stored one of the same kind and
// name (override may be a deletion: kind and name with a nil entry).
type entryOverride struct {
	kind, name string
	entry      configentry.Entry // nil = deleted
}

func lookupEntry(tx *memdb.Txn, kind, name string, o entryOverride) configentry.Entry {
	if o.kind == kind && o.name == name {
		return o.entry
	}
	raw, err := tx.First(tableConfig, "id", kind, name)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*configRow).Entry
}

func protocolOf(tx *memdb.Txn, service string, o entryOverride) string {
	if e := lookupEntry(tx, configentry.ServiceDefaults, service, o); e != nil {
		if p := configentry.Protocol(e); p != "" {
			return p
		}
	}
	if e := lookupEntry(tx, configentry.ProxyDefaults, configentry.ProxyConfigGlobal, o); e != nil {
		if p := configentry.Protocol(e); p != "" {
			return p
		}
	}
	return "tcp"
}

// checkChainProtocols refuses a write that would leave a service-router or
// service-splitter on a service whose protocol is not HTTP-based, as Consul's
// discovery chain compiler does.
func checkChainProtocols(tx *memdb.Txn, o entryOverride) error {
	for _, kind := range []string{configentry.ServiceRouter, configentry.ServiceSplitter} {
		it, err := tx.Get(tableConfig, "id_prefix", kind)
		if err != nil {
			return fmt.Errorf("list %s entries: %w", kind, err)
		}
		var names []string
		for raw := it.Next(); raw != nil; raw = it.Next() {
			names = append(names, raw.(*configRow).Name)
		}
		if o.kind == kind && o.entry != nil {
			names = append(names, o.name)
		}
		for _, name := range names {
			if lookupEntry(tx, kind, name, o) == nil {
				continue
			}
			if p := protocolOf(tx, name, o); !l7Protocol(p) {
				return fmt.Errorf("discovery chain %q uses a protocol (%s) that does not permit advanced routing or splitting behavior: "+
					"set Protocol = \"http\" (or http2, grpc) in the service-defaults entry for %q first", name, p, name)
			}
		}
	}
	return nil
}

// ServiceProtocol returns a service's protocol: its service-defaults, else
// the global proxy-defaults, else "tcp". It adds what it read to ws.
func (s *Store) ServiceProtocol(ws memdb.WatchSet, service string) (string, error) {
	for _, k := range [...][2]string{{configentry.ServiceDefaults, service}, {configentry.ProxyDefaults, configentry.ProxyConfigGlobal}} {
		_, e, err := s.ConfigEntry(ws, k[0], k[1])
		if err != nil {
			return "", fmt.Errorf("protocol of %q: %w", service, err)
		}
		if e != nil {
			if p := configentry.Protocol(e); p != "" {
				return p, nil
			}
		}
	}
	return "tcp", nil
}
