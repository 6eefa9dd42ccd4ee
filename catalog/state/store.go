package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog/configentry"
)

// Store is the in-memory indexed state of the cluster: nodes, service
// instances, checks and config entries, each write stamped with the raft index
// that produced it. Reads may pass a memdb.WatchSet that fires when anything
// the read looked at changes; this is what blocking queries wait on.
//
// A Store is safe for concurrent use. Writes come only from the raft FSM (or a
// test), so they are serialised by raft.
type Store struct {
	mu sync.RWMutex
	db *memdb.MemDB
	// abandon is closed when the whole state is replaced (snapshot restore),
	// waking every blocking query so it re-reads.
	abandon chan struct{}
}

// Errors returned by store writes. They are deterministic: the same log entry
// fails the same way on every server.
var (
	ErrNotFound       = errors.New("not found")
	ErrMissingNode    = errors.New("missing node registration")
	ErrMissingService = errors.New("unknown service")
)

// NewStore returns an empty store.
func NewStore() (*Store, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("create state store: %w", err)
	}
	return &Store{db: db, abandon: make(chan struct{})}, nil
}

func (s *Store) current() (*memdb.MemDB, chan struct{}) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db, s.abandon
}

// read opens a read transaction and adds the abandon channel to ws.
func (s *Store) read(ws memdb.WatchSet) *memdb.Txn {
	db, abandon := s.current()
	if ws != nil {
		ws.Add(abandon)
	}
	return db.Txn(false)
}

func (s *Store) write() *memdb.Txn {
	db, _ := s.current()
	return db.Txn(true)
}

// replace swaps in a new database (after a restore) and wakes all watchers.
func (s *Store) replace(db *memdb.MemDB) {
	s.mu.Lock()
	old := s.abandon
	s.db, s.abandon = db, make(chan struct{})
	s.mu.Unlock()
	close(old)
}

// tableIndex returns the highest index of the named tables and watches them.
func tablesIndex(tx *memdb.Txn, ws memdb.WatchSet, tables ...string) uint64 {
	var max uint64
	for _, t := range tables {
		ch, raw, err := tx.FirstWatch(tableIndex, "id", t)
		if err != nil {
			continue
		}
		if ws != nil {
			ws.Add(ch)
		}
		if raw != nil && raw.(*indexRow).Index > max {
			max = raw.(*indexRow).Index
		}
	}
	return max
}

func bumpIndex(tx *memdb.Txn, idx uint64, tables ...string) error {
	for _, t := range tables {
		if err := tx.Insert(tableIndex, &indexRow{Table: t, Index: idx}); err != nil {
			return fmt.Errorf("update index of %s: %w", t, err)
		}
	}
	return nil
}

// LastIndex returns the highest raft index applied to any table.
func (s *Store) LastIndex() uint64 {
	tx := s.read(nil)
	defer tx.Abort()
	return tablesIndex(tx, nil, tableNodes, tableServices, tableChecks, tableConfig)
}

// ---- writes (called from the FSM) ----

// Register upserts a node and, when given, one service and checks on it. It is
// all or nothing.
func (s *Store) Register(idx uint64, req *RegisterRequest) error {
	tx := s.write()
	defer tx.Abort()
	if err := ensureRegistration(tx, idx, req); err != nil {
		return err
	}
	tx.Commit()
	return nil
}

func ensureRegistration(tx *memdb.Txn, idx uint64, req *RegisterRequest) error {
	if req.Node == nil || req.Node.Node == "" {
		return fmt.Errorf("register: %w", ErrMissingNode)
	}
	peer := req.PeerName
	if !req.SkipNodeUpdate {
		if err := ensureNode(tx, idx, peer, req.Node); err != nil {
			return err
		}
	} else if n, _ := tx.First(tableNodes, "id", peer, req.Node.Node); n == nil {
		return fmt.Errorf("register on node %q: %w", req.Node.Node, ErrMissingNode)
	}
	if req.Service != nil {
		if err := ensureService(tx, idx, peer, req.Node.Node, req.Service); err != nil {
			return err
		}
	}
	for _, c := range req.Checks {
		if err := ensureCheck(tx, idx, peer, req.Node.Node, c); err != nil {
			return err
		}
	}
	return nil
}

func ensureNode(tx *memdb.Txn, idx uint64, peer string, n *Node) error {
	cp := *n
	cp.PeerName = peer
	if cp.Meta == nil {
		cp.Meta = map[string]string{}
	}
	if cp.TaggedAddresses == nil {
		cp.TaggedAddresses = map[string]string{}
	}
	existing, err := tx.First(tableNodes, "id", peer, n.Node)
	if err != nil {
		return fmt.Errorf("look up node %q: %w", n.Node, err)
	}
	if existing != nil {
		old := existing.(*nodeRow).Node
		cp.CreateIndex, cp.ModifyIndex = old.CreateIndex, old.ModifyIndex
		if nodeEqual(old, &cp) {
			return nil
		}
		cp.ModifyIndex = idx
	} else {
		cp.CreateIndex, cp.ModifyIndex = idx, idx
	}
	if err := tx.Insert(tableNodes, &nodeRow{PeerName: peer, Node: &cp}); err != nil {
		return fmt.Errorf("insert node %q: %w", n.Node, err)
	}
	if err := bumpNodeServices(tx, idx, peer, n.Node); err != nil {
		return err
	}
	return bumpIndex(tx, idx, tableNodes)
}

func nodeEqual(a, b *Node) bool {
	return a.ID == b.ID && a.Node == b.Node && a.Address == b.Address && a.Datacenter == b.Datacenter &&
		mapsEqual(a.TaggedAddresses, b.TaggedAddresses) && mapsEqual(a.Meta, b.Meta)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func ensureService(tx *memdb.Txn, idx uint64, peer, node string, svc *Service) error {
	cp := *svc
	cp.PeerName = peer
	if cp.ID == "" {
		cp.ID = cp.Service
	}
	existing, err := tx.First(tableServices, "id", peer, node, cp.ID)
	if err != nil {
		return fmt.Errorf("look up service %q: %w", cp.ID, err)
	}
	if existing != nil {
		old := existing.(*serviceRow).Service
		cp.CreateIndex, cp.ModifyIndex = old.CreateIndex, old.ModifyIndex
		if serviceEqual(old, &cp) {
			return nil
		}
		if err := bumpService(tx, idx, peer, old.Service); err != nil { // renamed instances leave the old name
			return err
		}
	} else {
		cp.CreateIndex = idx
	}
	cp.ModifyIndex = idx
	if err := tx.Insert(tableServices, &serviceRow{PeerName: peer, Node: node, Service: &cp}); err != nil {
		return fmt.Errorf("insert service %q: %w", cp.ID, err)
	}
	// Checks carry the service's name and tags; refresh them.
	it, err := tx.Get(tableChecks, "node_service", peer, node, cp.ID)
	if err != nil {
		return fmt.Errorf("look up checks of service %q: %w", cp.ID, err)
	}
	var stale []*HealthCheck
	for raw := it.Next(); raw != nil; raw = it.Next() {
		c := raw.(*checkRow).Check
		if c.ServiceName != cp.Service || !slices.Equal(c.ServiceTags, cp.Tags) {
			stale = append(stale, c)
		}
	}
	for _, c := range stale {
		nc := *c
		nc.ServiceName, nc.ServiceTags, nc.ModifyIndex = cp.Service, cp.Tags, idx
		if err := tx.Insert(tableChecks, &checkRow{PeerName: peer, Node: node, Check: &nc}); err != nil {
			return fmt.Errorf("update check %q: %w", nc.CheckID, err)
		}
	}
	if len(stale) > 0 {
		if err := bumpIndex(tx, idx, tableChecks); err != nil {
			return err
		}
	}
	if err := bumpService(tx, idx, peer, cp.Service); err != nil {
		return err
	}
	return bumpIndex(tx, idx, tableServices)
}

func ensureCheck(tx *memdb.Txn, idx uint64, peer, node string, c *HealthCheck) error {
	if c.CheckID == "" {
		return fmt.Errorf("register check: CheckID is required")
	}
	cp := *c
	cp.Node, cp.PeerName = node, peer
	if cp.Status == "" {
		cp.Status = HealthCritical
	}
	if !ValidHealthStatus(cp.Status) {
		return fmt.Errorf("register check %q: invalid status %q", cp.CheckID, cp.Status)
	}
	if cp.ServiceID != "" {
		raw, err := tx.First(tableServices, "id", peer, node, cp.ServiceID)
		if err != nil {
			return fmt.Errorf("look up service %q: %w", cp.ServiceID, err)
		}
		if raw == nil {
			return fmt.Errorf("register check %q for service %q: %w", cp.CheckID, cp.ServiceID, ErrMissingService)
		}
		svc := raw.(*serviceRow).Service
		cp.ServiceName, cp.ServiceTags = svc.Service, svc.Tags
	} else {
		cp.ServiceName, cp.ServiceTags = "", []string{}
	}
	existing, err := tx.First(tableChecks, "id", peer, node, cp.CheckID)
	if err != nil {
		return fmt.Errorf("look up check %q: %w", cp.CheckID, err)
	}
	if existing != nil {
		old := existing.(*checkRow).Check
		cp.CreateIndex, cp.ModifyIndex = old.CreateIndex, old.ModifyIndex
		if checkEqual(old, &cp) {
			return nil
		}
	} else {
		cp.CreateIndex = idx
	}
	cp.ModifyIndex = idx
	if err := tx.Insert(tableChecks, &checkRow{PeerName: peer, Node: node, Check: &cp}); err != nil {
		return fmt.Errorf("insert check %q: %w", cp.CheckID, err)
	}
	if err := bumpCheckServices(tx, idx, peer, node, &cp); err != nil {
		return err
	}
	return bumpIndex(tx, idx, tableChecks)
}

// UpdateCheckStatus sets the status and output of an existing check. An
// unknown check is ErrNotFound.
func (s *Store) UpdateCheckStatus(idx uint64, peer, node, checkID, status, output string) error {
	tx := s.write()
	defer tx.Abort()
	raw, err := tx.First(tableChecks, "id", peer, node, checkID)
	if err != nil {
		return fmt.Errorf("look up check %q: %w", checkID, err)
	}
	if raw == nil {
		return fmt.Errorf("check %q on node %q: %w", checkID, node, ErrNotFound)
	}
	c := *raw.(*checkRow).Check
	c.Status, c.Output = status, output
	if err := ensureCheck(tx, idx, peer, node, &c); err != nil {
		return err
	}
	tx.Commit()
	return nil
}

// Deregister removes a check, a service (with its checks), or a whole node
// (with everything on it) depending on which of req's fields are set.
// Removing something that is not there is not an error.
func (s *Store) Deregister(idx uint64, req *DeregisterRequest) error {
	tx := s.write()
	defer tx.Abort()
	peer, node := req.PeerName, req.Node
	var err error
	switch {
	case req.ServiceID != "":
		err = deleteService(tx, idx, peer, node, req.ServiceID)
	case req.CheckID != "":
		err = deleteCheck(tx, idx, peer, node, req.CheckID)
	default:
		err = deleteNode(tx, idx, peer, node)
	}
	if err != nil {
		return err
	}
	tx.Commit()
	return nil
}

func deleteRows(tx *memdb.Txn, idx uint64, table, index string, args ...any) error {
	n, err := tx.DeleteAll(table, index, args...)
	if err != nil {
		return fmt.Errorf("delete from %s: %w", table, err)
	}
	if n > 0 {
		return bumpIndex(tx, idx, table)
	}
	return nil
}

func deleteCheck(tx *memdb.Txn, idx uint64, peer, node, id string) error {
	raw, err := tx.First(tableChecks, "id", peer, node, id)
	if err != nil {
		return fmt.Errorf("look up check %q: %w", id, err)
	}
	if raw == nil {
		return nil
	}
	if err := bumpCheckServices(tx, idx, peer, node, raw.(*checkRow).Check); err != nil {
		return err
	}
	return deleteRows(tx, idx, tableChecks, "id", peer, node, id)
}

func deleteService(tx *memdb.Txn, idx uint64, peer, node, id string) error {
	raw, err := tx.First(tableServices, "id", peer, node, id)
	if err != nil {
		return fmt.Errorf("look up service %q: %w", id, err)
	}
	if raw != nil {
		if err := bumpService(tx, idx, peer, raw.(*serviceRow).Service.Service); err != nil {
			return err
		}
	}
	if err := deleteRows(tx, idx, tableChecks, "node_service", peer, node, id); err != nil {
		return err
	}
	return deleteRows(tx, idx, tableServices, "id", peer, node, id)
}

func deleteNode(tx *memdb.Txn, idx uint64, peer, node string) error {
	if err := bumpNodeServices(tx, idx, peer, node); err != nil {
		return err
	}
	if err := deleteRows(tx, idx, tableChecks, "id_prefix", peer, node); err != nil {
		return err
	}
	if err := deleteRows(tx, idx, tableServices, "id_prefix", peer, node); err != nil {
		return err
	}
	return deleteRows(tx, idx, tableNodes, "id", peer, node)
}

// ConfigSet writes entry. With cas, it writes only if the stored entry's
// ModifyIndex equals casIndex (0 = must not exist) and reports whether it did.
func (s *Store) ConfigSet(idx uint64, entry configentry.Entry, cas bool, casIndex uint64) (bool, error) {
	tx := s.write()
	defer tx.Abort()
	kind, name := entry.GetKind(), entry.GetName()
	raw, err := tx.First(tableConfig, "id", kind, name)
	if err != nil {
		return false, fmt.Errorf("look up config entry %s/%s: %w", kind, name, err)
	}
	ri := entry.GetRaftIndex()
	if raw != nil {
		old := raw.(*configRow).Entry.GetRaftIndex()
		if cas && old.ModifyIndex != casIndex {
			return false, nil
		}
		ri.CreateIndex = old.CreateIndex
	} else {
		if cas && casIndex != 0 {
			return false, nil
		}
		ri.CreateIndex = idx
	}
	ri.ModifyIndex = idx
	if err := checkChainProtocols(tx, entryOverride{kind: kind, name: name, entry: entry}); err != nil {
		return false, err
	}
	if err := tx.Insert(tableConfig, &configRow{Kind: kind, Name: name, Entry: entry}); err != nil {
		return false, fmt.Errorf("insert config entry %s/%s: %w", kind, name, err)
	}
	if err := bumpIndex(tx, idx, tableConfig); err != nil {
		return false, err
	}
	tx.Commit()
	return true, nil
}

// ConfigDelete removes an entry. With cas, it deletes only if the entry's
// ModifyIndex equals casIndex, and reports whether it did. Deleting a missing
// entry succeeds (Consul's behaviour) unless cas is set.
func (s *Store) ConfigDelete(idx uint64, kind, name string, cas bool, casIndex uint64) (bool, error) {
	tx := s.write()
	defer tx.Abort()
	raw, err := tx.First(tableConfig, "id", kind, name)
	if err != nil {
		return false, fmt.Errorf("look up config entry %s/%s: %w", kind, name, err)
	}
	if raw == nil {
		return !cas, nil
	}
	if cas && raw.(*configRow).Entry.GetRaftIndex().ModifyIndex != casIndex {
		return false, nil
	}
	if err := checkChainProtocols(tx, entryOverride{kind: kind, name: name}); err != nil {
		return false, err
	}
	if err := deleteRows(tx, idx, tableConfig, "id", kind, name); err != nil {
		return false, err
	}
	tx.Commit()
	return true, nil
}

// ---- reads ----

// Nodes returns local nodes sorted by name.
func (s *Store) Nodes(ws memdb.WatchSet, peer string) (uint64, []*Node, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableNodes)
	it, err := tx.Get(tableNodes, "id_prefix", peer)
	if err != nil {
		return 0, nil, fmt.Errorf("list nodes: %w", err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	var out []*Node
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*nodeRow)
		if r.PeerName == peer {
			out = append(out, r.Node)
		}
	}
	return idx, out, nil
}

// Node returns one node, or nil.
func (s *Store) Node(ws memdb.WatchSet, peer, name string) (uint64, *Node, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableNodes)
	ch, raw, err := tx.FirstWatch(tableNodes, "id", peer, name)
	if err != nil {
		return 0, nil, fmt.Errorf("look up node %q: %w", name, err)
	}
	if ws != nil {
		ws.Add(ch)
	}
	if raw == nil {
		return idx, nil, nil
	}
	return idx, raw.(*nodeRow).Node, nil
}

// Services returns every service name with the union of its instances' tags.
func (s *Store) Services(ws memdb.WatchSet, peer string) (uint64, map[string][]string, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableServices)
	it, err := tx.Get(tableServices, "id_prefix", peer)
	if err != nil {
		return 0, nil, fmt.Errorf("list services: %w", err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	out := map[string][]string{}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*serviceRow)
		if r.PeerName != peer {
			continue
		}
		tags := out[r.Service.Service]
		for _, t := range r.Service.Tags {
			if !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
		if tags == nil {
			tags = []string{}
		}
		out[r.Service.Service] = tags
	}
	for _, tags := range out {
		slices.Sort(tags)
	}
	return idx, out, nil
}

// NodeServices returns the services registered on one node.
func (s *Store) NodeServices(ws memdb.WatchSet, peer, node string) (uint64, []*Service, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableServices)
	it, err := tx.Get(tableServices, "id_prefix", peer, node)
	if err != nil {
		return 0, nil, fmt.Errorf("list services of node %q: %w", node, err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	var out []*Service
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*serviceRow).Service)
	}
	return idx, out, nil
}

// NodeChecks returns the checks registered on one node.
func (s *Store) NodeChecks(ws memdb.WatchSet, peer, node string) (uint64, []*HealthCheck, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableChecks)
	it, err := tx.Get(tableChecks, "id_prefix", peer, node)
	if err != nil {
		return 0, nil, fmt.Errorf("list checks of node %q: %w", node, err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	var out []*HealthCheck
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*checkRow).Check)
	}
	return idx, out, nil
}

// ServiceNodes returns the instances of a service with their nodes, sorted by
// node then service ID.
func (s *Store) ServiceNodes(ws memdb.WatchSet, peer, service string) (uint64, []ServiceNode, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := serviceIndex(tx, ws, peer, service)
	rows, err := serviceRows(tx, ws, peer, service)
	if err != nil {
		return 0, nil, err
	}
	out := make([]ServiceNode, 0, len(rows))
	for _, r := range rows {
		out = append(out, ServiceNode{Node: lookupNode(tx, peer, r.Node), Service: r.Service})
	}
	return idx, out, nil
}

// CheckServiceNodes returns the instances of a service with their nodes and the
// checks that apply to each (node-level checks first, then the service's own).
func (s *Store) CheckServiceNodes(ws memdb.WatchSet, peer, service string) (uint64, []CheckServiceNode, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := serviceIndex(tx, ws, peer, service)
	rows, err := serviceRows(tx, ws, peer, service)
	if err != nil {
		return 0, nil, err
	}
	out := make([]CheckServiceNode, 0, len(rows))
	for _, r := range rows {
		var checks []*HealthCheck
		for _, sid := range []string{"", r.Service.ID} {
			it, err := tx.Get(tableChecks, "node_service", peer, r.Node, sid)
			if err != nil {
				return 0, nil, fmt.Errorf("list checks of %q on %q: %w", sid, r.Node, err)
			}
			for raw := it.Next(); raw != nil; raw = it.Next() {
				checks = append(checks, raw.(*checkRow).Check)
			}
		}
		out = append(out, CheckServiceNode{Node: lookupNode(tx, peer, r.Node), Service: r.Service, Checks: checks})
	}
	return idx, out, nil
}

func serviceRows(tx *memdb.Txn, ws memdb.WatchSet, peer, service string) ([]*serviceRow, error) {
	it, err := tx.Get(tableServices, "service", peer, service)
	if err != nil {
		return nil, fmt.Errorf("list instances of %q: %w", service, err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	var rows []*serviceRow
	for raw := it.Next(); raw != nil; raw = it.Next() {
		rows = append(rows, raw.(*serviceRow))
	}
	slices.SortFunc(rows, func(a, b *serviceRow) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return strings.Compare(a.Service.ID, b.Service.ID)
	})
	return rows, nil
}

func lookupNode(tx *memdb.Txn, peer, name string) *Node {
	raw, err := tx.First(tableNodes, "id", peer, name)
	if err != nil || raw == nil {
		return &Node{Node: name, PeerName: peer}
	}
	return raw.(*nodeRow).Node
}

// ConfigEntry returns one config entry, or nil.
func (s *Store) ConfigEntry(ws memdb.WatchSet, kind, name string) (uint64, configentry.Entry, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableConfig)
	ch, raw, err := tx.FirstWatch(tableConfig, "id", kind, name)
	if err != nil {
		return 0, nil, fmt.Errorf("look up config entry %s/%s: %w", kind, name, err)
	}
	if ws != nil {
		ws.Add(ch)
	}
	if raw == nil {
		return idx, nil, nil
	}
	return idx, raw.(*configRow).Entry, nil
}

// ConfigEntries returns every entry of a kind ("" = all kinds), sorted by kind
// then name.
func (s *Store) ConfigEntries(ws memdb.WatchSet, kind string) (uint64, []configentry.Entry, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableConfig)
	args := []any{}
	if kind != "" {
		args = append(args, kind)
	}
	it, err := tx.Get(tableConfig, "id_prefix", args...)
	if err != nil {
		return 0, nil, fmt.Errorf("list config entries of kind %q: %w", kind, err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	var out []configentry.Entry
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*configRow).Entry)
	}
	return idx, out, nil
}

// RegisterBatch applies several registrations in one transaction: all or none.
func (s *Store) RegisterBatch(idx uint64, reqs []*RegisterRequest) error {
	tx := s.write()
	defer tx.Abort()
	for i, req := range reqs {
		if err := ensureRegistration(tx, idx, req); err != nil {
			return fmt.Errorf("registration %d of %d: %w", i+1, len(reqs), err)
		}
	}
	tx.Commit()
	return nil
}

// RowCounts returns the number of rows of each table (by table name), for
// metrics.
func (s *Store) RowCounts() map[string]int {
	tx := s.read(nil)
	defer tx.Abort()
	out := map[string]int{}
	for _, t := range []string{tableNodes, tableServices, tableChecks, tableConfig, tableVirtualIPs} {
		it, err := tx.Get(t, "id")
		if err != nil {
			continue
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			out[t]++
		}
	}
	return out
}

// SyncNode makes the node's services and checks exactly those in req (the
// serfHealth check excepted), writing only what differs. All or nothing.
func (s *Store) SyncNode(idx uint64, req *SyncNodeRequest) error {
	if req.Node == nil || req.Node.Node == "" {
		return fmt.Errorf("sync node: %w", ErrMissingNode)
	}
	tx := s.write()
	defer tx.Abort()
	node := req.Node.Node
	if err := ensureNode(tx, idx, "", req.Node); err != nil {
		return err
	}
	wantSvc := map[string]bool{}
	for _, svc := range req.Services {
		id := svc.ID
		if id == "" {
			id = svc.Service
		}
		wantSvc[strings.ToLower(id)] = true
	}
	wantCheck := map[string]bool{strings.ToLower(SerfCheckID): true}
	for _, c := range req.Checks {
		wantCheck[strings.ToLower(c.CheckID)] = true
	}
	var dropSvc, dropCheck []string
	it, err := tx.Get(tableServices, "id_prefix", "", node)
	if err != nil {
		return fmt.Errorf("list services of node %q: %w", node, err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if id := raw.(*serviceRow).Service.ID; !wantSvc[strings.ToLower(id)] {
			dropSvc = append(dropSvc, id)
		}
	}
	it, err = tx.Get(tableChecks, "id_prefix", "", node)
	if err != nil {
		return fmt.Errorf("list checks of node %q: %w", node, err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if id := raw.(*checkRow).Check.CheckID; !wantCheck[strings.ToLower(id)] {
			dropCheck = append(dropCheck, id)
		}
	}
	for _, id := range dropCheck {
		if err := deleteCheck(tx, idx, "", node, id); err != nil {
			return err
		}
	}
	for _, id := range dropSvc {
		if err := deleteService(tx, idx, "", node, id); err != nil {
			return err
		}
	}
	for _, svc := range req.Services {
		if err := ensureService(tx, idx, "", node, svc); err != nil {
			return err
		}
	}
	for _, c := range req.Checks {
		if err := ensureCheck(tx, idx, "", node, c); err != nil {
			return err
		}
	}
	tx.Commit()
	return nil
}

// serviceEqual and checkEqual compare rows ignoring their raft indexes, so an
// unchanged re-registration writes nothing and wakes no watcher.
func serviceEqual(a, b *Service) bool {
	x, y := *a, *b
	x.RaftIndex, y.RaftIndex = RaftIndex{}, RaftIndex{}
	return jsonEqual(&x, &y)
}

func checkEqual(a, b *HealthCheck) bool {
	x, y := *a, *b
	x.RaftIndex, y.RaftIndex = RaftIndex{}, RaftIndex{}
	return jsonEqual(&x, &y)
}

func jsonEqual(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// Per-service indexes. Besides one index per table, the index table keeps one
// per service name, bumped by every write that changes what a health or
// catalog query for that service returns (its instances, their checks, their
// nodes' checks and the nodes themselves). Blocking queries on one service
// therefore wake only when that service changes, as in Consul.

func serviceIndexKey(peer, service string) string {
	return "service\x00" + peer + "\x00" + service
}

func bumpService(tx *memdb.Txn, idx uint64, peer, service string) error {
	return bumpIndex(tx, idx, serviceIndexKey(peer, service))
}

// bumpNodeServices bumps every service with an instance on the node.
func bumpNodeServices(tx *memdb.Txn, idx uint64, peer, node string) error {
	it, err := tx.Get(tableServices, "id_prefix", peer, node)
	if err != nil {
		return fmt.Errorf("list services of node %q: %w", node, err)
	}
	var names []string
	for raw := it.Next(); raw != nil; raw = it.Next() {
		names = append(names, raw.(*serviceRow).Service.Service)
	}
	for _, name := range names {
		if err := bumpService(tx, idx, peer, name); err != nil {
			return err
		}
	}
	return nil
}

// bumpCheckServices bumps what a check affects: its service, or every
// service on the node for a node-level check.
func bumpCheckServices(tx *memdb.Txn, idx uint64, peer, node string, c *HealthCheck) error {
	if c.ServiceID == "" {
		return bumpNodeServices(tx, idx, peer, node)
	}
	return bumpService(tx, idx, peer, c.ServiceName)
}

// serviceIndex returns the service's index and watches it. A service never
// written has none yet: the services table's index stands in, and the watch
// fires when the service first appears.
func serviceIndex(tx *memdb.Txn, ws memdb.WatchSet, peer, service string) uint64 {
	ch, raw, err := tx.FirstWatch(tableIndex, "id", serviceIndexKey(peer, service))
	if err == nil && ws != nil {
		ws.Add(ch)
	}
	if err == nil && raw != nil {
		return raw.(*indexRow).Index
	}
	return tablesIndex(tx, nil, tableServices)
}

// TypicalServiceNames returns, sorted, the names of services with at least
// one typical instance (Kind "": no proxies or gateways), in one pass over
// the instances.
func (s *Store) TypicalServiceNames(ws memdb.WatchSet, peer string) (uint64, []string, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableServices)
	it, err := tx.Get(tableServices, "id_prefix", peer)
	if err != nil {
		return 0, nil, fmt.Errorf("list services: %w", err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	seen := map[string]bool{}
	var out []string
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*serviceRow)
		if r.PeerName == peer && r.Service.Kind == "" && !seen[r.Service.Service] {
			seen[r.Service.Service] = true
			out = append(out, r.Service.Service)
		}
	}
	slices.Sort(out)
	return idx, out, nil
}
