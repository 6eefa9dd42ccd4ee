package state

import (
	"fmt"
	"strings"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog/configentry"
)

// Table names of the state store.
const (
	tableNodes    = "nodes"
	tableServices = "services"
	tableChecks   = "checks"
	tableConfig   = "config-entries"
	tableIndex    = "index"
)

// Rows. Every row is immutable once inserted: writers insert a fresh copy.

type nodeRow struct {
	PeerName string
	Node     *Node
}

type serviceRow struct {
	PeerName string
	Node     string
	Service  *Service
}

type checkRow struct {
	PeerName string
	Node     string
	Check    *HealthCheck
}

type configRow struct {
	Kind  string
	Name  string
	Entry configentry.Entry
}

type indexRow struct {
	Table string
	Index uint64
}

// keyIndex is a memdb indexer built from a function returning the key parts of
// a row. Parts are lower-cased (Consul's names are case-insensitive) and each is
// terminated by a NUL so that prefixes of whole parts can be queried.
type keyIndex struct {
	parts func(obj any) []string
}

func (k keyIndex) FromObject(obj any) (bool, []byte, error) {
	return true, joinKey(k.parts(obj)), nil
}

func (k keyIndex) FromArgs(args ...any) ([]byte, error) {
	parts, err := stringArgs(args)
	if err != nil {
		return nil, err
	}
	return joinKey(parts), nil
}

func (k keyIndex) PrefixFromArgs(args ...any) ([]byte, error) {
	return k.FromArgs(args...)
}

func stringArgs(args []any) ([]string, error) {
	parts := make([]string, len(args))
	for i, a := range args {
		s, ok := a.(string)
		if !ok {
			return nil, fmt.Errorf("index argument %d: got %T, want string", i, a)
		}
		parts[i] = s
	}
	return parts, nil
}

func joinKey(parts []string) []byte {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(strings.ToLower(p))
		b.WriteByte(0)
	}
	return []byte(b.String())
}

func index(parts func(obj any) []string) *memdb.IndexSchema {
	return &memdb.IndexSchema{Indexer: keyIndex{parts: parts}}
}

func schema() *memdb.DBSchema {
	named := func(name string, unique bool, ix *memdb.IndexSchema) *memdb.IndexSchema {
		ix.Name, ix.Unique = name, unique
		return ix
	}
	tables := map[string]*memdb.TableSchema{
		tableNodes: {
			Name: tableNodes,
			Indexes: map[string]*memdb.IndexSchema{
				"id": named("id", true, index(func(o any) []string {
					r := o.(*nodeRow)
					return []string{r.PeerName, r.Node.Node}
				})),
			},
		},
		tableServices: {
			Name: tableServices,
			Indexes: map[string]*memdb.IndexSchema{
				"id": named("id", true, index(func(o any) []string {
					r := o.(*serviceRow)
					return []string{r.PeerName, r.Node, r.Service.ID}
				})),
				"service": named("service", false, index(func(o any) []string {
					r := o.(*serviceRow)
					return []string{r.PeerName, r.Service.Service}
				})),
			},
		},
		tableChecks: {
			Name: tableChecks,
			Indexes: map[string]*memdb.IndexSchema{
				"id": named("id", true, index(func(o any) []string {
					r := o.(*checkRow)
					return []string{r.PeerName, r.Node, r.Check.CheckID}
				})),
				"node_service": named("node_service", false, index(func(o any) []string {
					r := o.(*checkRow)
					return []string{r.PeerName, r.Node, r.Check.ServiceID}
				})),
			},
		},
		tableConfig: {
			Name: tableConfig,
			Indexes: map[string]*memdb.IndexSchema{
				"id": named("id", true, index(func(o any) []string {
					r := o.(*configRow)
					return []string{r.Kind, r.Name}
				})),
			},
		},
		tableIndex: {
			Name: tableIndex,
			Indexes: map[string]*memdb.IndexSchema{
				"id": named("id", true, index(func(o any) []string {
					return []string{o.(*indexRow).Table}
				})),
			},
		},
	}
	for name, t := range peeringTables() {
		tables[name] = t
	}
	for name, t := range virtualIPTables() {
		tables[name] = t
	}
	for name, t := range aclSchema() {
		tables[name] = t
	}
	for name, t := range joinTokenTables() {
		tables[name] = t
	}
	return &memdb.DBSchema{Tables: tables}
}
