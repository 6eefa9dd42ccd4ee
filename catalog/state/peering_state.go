package state

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/go-memdb"
)

// Peering states, as Consul names them. ACTIVE and FAILING are derived live
// from the stream; the stored state of an established peering is ACTIVE.
const (
	PeeringPending      = "PENDING"
	PeeringEstablishing = "ESTABLISHING"
	PeeringActive       = "ACTIVE"
	PeeringFailing      = "FAILING"
	PeeringDeleting     = "DELETING"
	PeeringTerminated   = "TERMINATED"
)

// Errors of the peering state. They are deterministic: the FSM returns them.
var (
	ErrPeeringNotFound = errors.New("peering not found")
	// ErrInvalidSecret means a presented secret matched nothing: the token
	// was used already, superseded by a newer one, or never valid.
	ErrInvalidSecret = errors.New("invalid peering secret: generate a new peering token")
	ErrPeeringRole   = errors.New("a peering with this name already exists in the other role")
	// ErrPeeringDeleting refuses a write that would move a peering being
	// deleted back to another state.
	ErrPeeringDeleting = errors.New("peering is being deleted")
	// ErrNoActiveSecret refuses rotating the stream secret of a peering
	// whose stream never opened: there is nothing to rotate yet.
	ErrNoActiveSecret = errors.New("no active stream secret to rotate: the peer has not opened a stream yet")
)

// PeeringRemote is where the other side of a peering lives.
type PeeringRemote struct {
	Partition  string `json:",omitempty"`
	Datacenter string `json:",omitempty"`
}

// Peering is one side's record of a peering relationship.
type Peering struct {
	// ID is this side's UUID for the peering; PeerID the other side's.
	ID        string
	Name      string
	Partition string            `json:",omitempty"`
	Meta      map[string]string `json:",omitempty"`
	// State is the stored lifecycle state (see the Peering* constants).
	State                 string
	PeerID                string   `json:",omitempty"`
	PeerCAPems            []string `json:",omitempty"`
	PeerServerName        string   `json:",omitempty"`
	PeerServerAddresses   []string `json:",omitempty"`
	ManualServerAddresses []string `json:",omitempty"`
	PeerTrustDomain       string   `json:",omitempty"`
	Remote                PeeringRemote
	// ShouldDial is true on the dialer (the side that established with a
	// token), false on the acceptor (the side that generated it).
	ShouldDial bool
	// DeletedAt is set (unix nanoseconds) once deletion has begun.
	DeletedAt int64 `json:",omitempty"`
	RaftIndex
}

// PeeringSecrets are the acceptor's secrets for one peering. An
// establishment secret is valid once; exchanging it yields a pending stream
// secret, which becomes the active one when a stream first opens with it.
type PeeringSecrets struct {
	PeeringID           string
	EstablishmentSecret string `json:",omitempty"`
	PendingStreamSecret string `json:",omitempty"`
	ActiveStreamSecret  string `json:",omitempty"`
	// EstablishmentExpiresAt (unix nanoseconds) bounds the establishment
	// secret when the token was generated with an expiry; 0 = none.
	EstablishmentExpiresAt int64 `json:",omitempty"`
	// DialerStreamSecret is the dialer's copy of its stream secret.
	DialerStreamSecret string `json:",omitempty"`
	// ActiveSince (unix nanoseconds) is when the active stream secret was
	// promoted; the rotation schedule counts from it. 0 on rows written
	// before it existed: the next scheduled check rotates them.
	ActiveSince int64 `json:",omitempty"`
	// ActiveIdentity and PendingIdentity are the dialer TLS identities the
	// active and pending stream secrets are bound to; nil = unbound (the
	// dialer presented no client certificate at the exchange, as a Consul
	// dialer does): the secret alone opens the stream.
	ActiveIdentity  *StreamIdentity `json:",omitempty"`
	PendingIdentity *StreamIdentity `json:",omitempty"`
	// PendingRotated marks a pending secret made by a rotation (for the
	// dialer that holds the active one), which the acceptor may hand over
	// the open stream; one made by an exchange belongs to whoever redeemed
	// the token and is never sent.
	PendingRotated bool `json:",omitempty"`
}

// StreamIdentity is the dialer's TLS identity recorded at the secret
// exchange: the trust domain named by its peering certificate and the CA
// certificates it presented with it, pinned. A stream bound to it must
// present a client certificate of that trust domain chaining to a pinned
// root or to the peer's replicated trust bundle.
type StreamIdentity struct {
	TrustDomain string
	RootPEMs    []string
}

// PeeringTrustBundle is a peer's CA roots, as replicated to us.
type PeeringTrustBundle struct {
	PeerName          string
	TrustDomain       string
	RootPEMs          []string
	ExportedPartition string `json:",omitempty"`
	RaftIndex
}

// CARoot is one root of this cluster's built-in CA. The private key is kept
// in raft, as Consul's built-in provider keeps it.
type CARoot struct {
	ID             string
	CertPEM        string
	KeyPEM         string
	TrustDomain    string
	CrossSignedPEM string `json:",omitempty"`
	Active         bool
	RaftIndex
}

// PeeringWriteRequest upserts a peering, optionally with its secrets in the
// same transaction.
type PeeringWriteRequest struct {
	Peering *Peering
	Secrets *PeeringSecrets `json:",omitempty"`
}

// SecretsOp is an operation on a peering's secrets.
type SecretsOp string

// Secret operations.
const (
	// SecretsExchange consumes the establishment secret (Presented) and
	// stores New as the pending stream secret.
	SecretsExchange SecretsOp = "exchange"
	// SecretsPromote is a stream opening with Presented: the active secret
	// passes; the pending one is promoted to active. Anything else fails.
	SecretsPromote SecretsOp = "promote"
	// SecretsRotate stores New as the pending stream secret, bound to the
	// active secret's identity, when a secret is active and none is
	// pending; with one pending already it changes nothing (the dialer may
	// hold that one). Presented is not used.
	SecretsRotate SecretsOp = "rotate"
	// SecretsStore is the dialer storing New, the stream secret the
	// acceptor rotated to, as its DialerStreamSecret.
	SecretsStore SecretsOp = "store"
)

// PeeringSecretsRequest changes a peering's secrets.
type PeeringSecretsRequest struct {
	Op        SecretsOp
	PeeringID string
	Presented string
	New       string `json:",omitempty"`
	// Now (unix nanoseconds) is when the leader received the request; it is
	// in the log so expiry is decided the same way on every server.
	Now int64 `json:",omitempty"`
	// Identity is the dialer's TLS identity an exchange binds the new
	// pending secret to; nil = unbound.
	Identity *StreamIdentity `json:",omitempty"`
}

// MetaSetRequest sets a cluster-wide value, only if it is unset when
// OnlyIfAbsent (used for the cluster ID, chosen once).
type MetaSetRequest struct {
	Key          string
	Value        string
	OnlyIfAbsent bool `json:",omitempty"`
}

// CARootsRequest replaces the CA roots (one of them active).
type CARootsRequest struct {
	Roots []*CARoot
}

// ---- schema ----

const (
	tablePeerings     = "peerings"
	tableSecrets      = "peering-secrets"
	tableTrustBundles = "peering-trust-bundles"
	tableCARoots      = "ca-roots"
	tableMeta         = "meta"
)

type metaRow struct {
	Key   string
	Value string
}

func peeringTables() map[string]*memdb.TableSchema {
	named := func(name string, ix *memdb.IndexSchema) *memdb.IndexSchema {
		ix.Name, ix.Unique = name, true
		return ix
	}
	return map[string]*memdb.TableSchema{
		tablePeerings: {Name: tablePeerings, Indexes: map[string]*memdb.IndexSchema{
			"id":   named("id", index(func(o any) []string { return []string{o.(*Peering).Name} })),
			"uuid": named("uuid", index(func(o any) []string { return []string{o.(*Peering).ID} })),
		}},
		tableSecrets: {Name: tableSecrets, Indexes: map[string]*memdb.IndexSchema{
			"id": named("id", index(func(o any) []string { return []string{o.(*PeeringSecrets).PeeringID} })),
		}},
		tableTrustBundles: {Name: tableTrustBundles, Indexes: map[string]*memdb.IndexSchema{
			"id": named("id", index(func(o any) []string { return []string{o.(*PeeringTrustBundle).PeerName} })),
		}},
		tableCARoots: {Name: tableCARoots, Indexes: map[string]*memdb.IndexSchema{
			"id": named("id", index(func(o any) []string { return []string{o.(*CARoot).ID} })),
		}},
		tableMeta: {Name: tableMeta, Indexes: map[string]*memdb.IndexSchema{
			"id": named("id", index(func(o any) []string { return []string{o.(*metaRow).Key} })),
		}},
	}
}

// ---- writes ----

// PeeringWrite upserts a peering (keeping its create index) and, when given,
// its secrets. A name held by a peering with another ID in the other role
// is refused (one role per name).
func (s *Store) PeeringWrite(idx uint64, req *PeeringWriteRequest) error {
	p := req.Peering
	if p == nil || p.Name == "" || p.ID == "" {
		return errors.New("peering write: name and ID are required")
	}
	tx := s.write()
	defer tx.Abort()
	raw, err := tx.First(tablePeerings, "id", p.Name)
	if err != nil {
		return fmt.Errorf("look up peering %q: %w", p.Name, err)
	}
	cp := *p
	if raw != nil {
		old := raw.(*Peering)
		if old.ID != p.ID && old.ShouldDial != p.ShouldDial && old.State != PeeringTerminated {
			return fmt.Errorf("peering %q: %w", p.Name, ErrPeeringRole)
		}
		if old.ID == p.ID && old.State == PeeringDeleting && p.State != PeeringDeleting {
			// A replication write racing a delete must not undo it.
			return fmt.Errorf("peering %q: %w", p.Name, ErrPeeringDeleting)
		}
		if old.ID != p.ID {
			// A new relationship under an old name: the old one's secrets go.
			if err := deleteRows(tx, idx, tableSecrets, "id", old.ID); err != nil {
				return err
			}
			cp.CreateIndex = idx
		} else {
			cp.CreateIndex = old.CreateIndex
		}
	} else {
		cp.CreateIndex = idx
	}
	cp.ModifyIndex = idx
	if err := tx.Insert(tablePeerings, &cp); err != nil {
		return fmt.Errorf("insert peering %q: %w", p.Name, err)
	}
	if err := bumpIndex(tx, idx, tablePeerings); err != nil {
		return err
	}
	if req.Secrets != nil {
		sec := *req.Secrets
		sec.PeeringID = cp.ID
		if err := tx.Insert(tableSecrets, &sec); err != nil {
			return fmt.Errorf("insert secrets of peering %q: %w", p.Name, err)
		}
		if err := bumpIndex(tx, idx, tableSecrets); err != nil {
			return err
		}
	}
	tx.Commit()
	return nil
}

// PeeringSecretsUpdate applies a secrets operation. Secrets are compared in
// constant time; a mismatch is ErrInvalidSecret and changes nothing.
func (s *Store) PeeringSecretsUpdate(idx uint64, req *PeeringSecretsRequest) error {
	tx := s.write()
	defer tx.Abort()
	raw, err := tx.First(tableSecrets, "id", req.PeeringID)
	if err != nil {
		return fmt.Errorf("look up peering secrets: %w", err)
	}
	if raw == nil || (req.Presented == "" && req.Op != SecretsRotate && req.Op != SecretsStore) {
		return ErrInvalidSecret
	}
	sec := *raw.(*PeeringSecrets)
	switch req.Op {
	case SecretsExchange:
		if !SecretMatches(sec.EstablishmentSecret, req.Presented) {
			return ErrInvalidSecret
		}
		if sec.EstablishmentExpiresAt != 0 && req.Now > sec.EstablishmentExpiresAt {
			return fmt.Errorf("peering token expired: %w", ErrInvalidSecret)
		}
		if req.New == "" {
			return errors.New("exchange: new stream secret missing")
		}
		sec.EstablishmentSecret, sec.EstablishmentExpiresAt, sec.PendingStreamSecret = "", 0, req.New
		sec.PendingIdentity, sec.PendingRotated = req.Identity.clone(), false
	case SecretsPromote:
		switch {
		case SecretMatches(sec.ActiveStreamSecret, req.Presented):
			return nil // nothing to change
		case SecretMatches(sec.PendingStreamSecret, req.Presented):
			sec.ActiveStreamSecret, sec.PendingStreamSecret = sec.PendingStreamSecret, ""
			sec.ActiveIdentity, sec.PendingIdentity, sec.PendingRotated = sec.PendingIdentity, nil, false
			sec.ActiveSince = req.Now
		default:
			return ErrInvalidSecret
		}
	case SecretsRotate:
		switch {
		case sec.ActiveStreamSecret == "":
			return ErrNoActiveSecret
		case sec.PendingStreamSecret != "":
			return nil // the dialer may hold it already: keep it
		case req.New == "":
			return errors.New("rotate: new stream secret missing")
		}
		sec.PendingStreamSecret, sec.PendingIdentity, sec.PendingRotated = req.New, sec.ActiveIdentity.clone(), true
	case SecretsStore:
		if req.New == "" {
			return errors.New("store: stream secret missing")
		}
		if sec.DialerStreamSecret == req.New {
			return nil
		}
		sec.DialerStreamSecret = req.New
	default:
		return fmt.Errorf("unknown secrets operation %q", req.Op)
	}
	if err := tx.Insert(tableSecrets, &sec); err != nil {
		return fmt.Errorf("update peering secrets: %w", err)
	}
	if err := bumpIndex(tx, idx, tableSecrets); err != nil {
		return err
	}
	tx.Commit()
	return nil
}

func (id *StreamIdentity) clone() *StreamIdentity {
	if id == nil {
		return nil
	}
	return &StreamIdentity{TrustDomain: id.TrustDomain, RootPEMs: slices.Clone(id.RootPEMs)}
}

// SecretMatches reports whether a presented peering secret is the stored
// one, comparing in constant time; an empty stored secret matches nothing.
// It is the one secret comparison of peerd: the state store's secret
// operations and peering's stream-secret check both call it.
func SecretMatches(stored, presented string) bool {
	return stored != "" && subtle.ConstantTimeCompare([]byte(stored), []byte(presented)) == 1
}

// PeeringDelete removes a peering row, its secrets and its trust bundle.
// Imported data is purged before this (in batches), by the caller.
func (s *Store) PeeringDelete(idx uint64, name string) error {
	tx := s.write()
	defer tx.Abort()
	raw, err := tx.First(tablePeerings, "id", name)
	if err != nil {
		return fmt.Errorf("look up peering %q: %w", name, err)
	}
	if raw == nil {
		return nil
	}
	if err := deleteRows(tx, idx, tableSecrets, "id", raw.(*Peering).ID); err != nil {
		return err
	}
	if err := deleteRows(tx, idx, tableTrustBundles, "id", name); err != nil {
		return err
	}
	if err := deleteRows(tx, idx, tablePeerings, "id", name); err != nil {
		return err
	}
	tx.Commit()
	return nil
}

// TrustBundleWrite stores a peer's trust bundle.
func (s *Store) TrustBundleWrite(idx uint64, b *PeeringTrustBundle) error {
	tx := s.write()
	defer tx.Abort()
	cp := *b
	if raw, _ := tx.First(tableTrustBundles, "id", b.PeerName); raw != nil {
		cp.CreateIndex = raw.(*PeeringTrustBundle).CreateIndex
	} else {
		cp.CreateIndex = idx
	}
	cp.ModifyIndex = idx
	if err := tx.Insert(tableTrustBundles, &cp); err != nil {
		return fmt.Errorf("insert trust bundle of %q: %w", b.PeerName, err)
	}
	if err := bumpIndex(tx, idx, tableTrustBundles); err != nil {
		return err
	}
	tx.Commit()
	return nil
}

// MetaSet sets a cluster-wide value; with OnlyIfAbsent an existing value is
// kept (and the write is not an error).
func (s *Store) MetaSet(idx uint64, req *MetaSetRequest) error {
	tx := s.write()
	defer tx.Abort()
	if req.OnlyIfAbsent {
		if raw, _ := tx.First(tableMeta, "id", req.Key); raw != nil {
			return nil
		}
	}
	if err := tx.Insert(tableMeta, &metaRow{Key: req.Key, Value: req.Value}); err != nil {
		return fmt.Errorf("set %s: %w", req.Key, err)
	}
	if err := bumpIndex(tx, idx, tableMeta); err != nil {
		return err
	}
	tx.Commit()
	return nil
}

// CARootsSet replaces every CA root with req.Roots.
func (s *Store) CARootsSet(idx uint64, req *CARootsRequest) error {
	active := 0
	for _, r := range req.Roots {
		if r.Active {
			active++
		}
	}
	if active != 1 {
		return fmt.Errorf("set CA roots: %d active roots, want exactly one", active)
	}
	tx := s.write()
	defer tx.Abort()
	if _, err := tx.DeleteAll(tableCARoots, "id_prefix"); err != nil {
		return fmt.Errorf("clear CA roots: %w", err)
	}
	for _, r := range req.Roots {
		cp := *r
		if cp.CreateIndex == 0 {
			cp.CreateIndex = idx
		}
		cp.ModifyIndex = idx
		if err := tx.Insert(tableCARoots, &cp); err != nil {
			return fmt.Errorf("insert CA root %s: %w", r.ID, err)
		}
	}
	if err := bumpIndex(tx, idx, tableCARoots); err != nil {
		return err
	}
	tx.Commit()
	return nil
}

// DeregisterBatch applies several deregistrations in one transaction.
func (s *Store) DeregisterBatch(idx uint64, reqs []*DeregisterRequest) error {
	tx := s.write()
	defer tx.Abort()
	for _, req := range reqs {
		var err error
		switch {
		case req.ServiceID != "":
			err = deleteService(tx, idx, req.PeerName, req.Node, req.ServiceID)
		case req.CheckID != "":
			err = deleteCheck(tx, idx, req.PeerName, req.Node, req.CheckID)
		default:
			err = deleteNode(tx, idx, req.PeerName, req.Node)
		}
		if err != nil {
			return err
		}
	}
	tx.Commit()
	return nil
}

// ---- reads ----

// Peering returns one peering by name, or nil.
func (s *Store) Peering(ws memdb.WatchSet, name string) (uint64, *Peering, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tablePeerings)
	ch, raw, err := tx.FirstWatch(tablePeerings, "id", name)
	if err != nil {
		return 0, nil, fmt.Errorf("look up peering %q: %w", name, err)
	}
	if ws != nil {
		ws.Add(ch)
	}
	if raw == nil {
		return idx, nil, nil
	}
	return idx, raw.(*Peering), nil
}

// PeeringByID returns one peering by its UUID, or nil.
func (s *Store) PeeringByID(ws memdb.WatchSet, id string) (uint64, *Peering, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tablePeerings)
	ch, raw, err := tx.FirstWatch(tablePeerings, "uuid", id)
	if err != nil {
		return 0, nil, fmt.Errorf("look up peering %s: %w", id, err)
	}
	if ws != nil {
		ws.Add(ch)
	}
	if raw == nil {
		return idx, nil, nil
	}
	return idx, raw.(*Peering), nil
}

// Peerings returns every peering, sorted by name.
func (s *Store) Peerings(ws memdb.WatchSet) (uint64, []*Peering, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tablePeerings)
	it, err := tx.Get(tablePeerings, "id")
	if err != nil {
		return 0, nil, fmt.Errorf("list peerings: %w", err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	var out []*Peering
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Peering))
	}
	return idx, out, nil
}

// PeeringIndex returns the highest raft index applied to the peering
// tables (peerings, their secrets, trust bundles).
func (s *Store) PeeringIndex() uint64 {
	tx := s.read(nil)
	defer tx.Abort()
	return tablesIndex(tx, nil, tablePeerings, tableSecrets, tableTrustBundles)
}

// PeeringSecrets returns a peering's secrets, or nil.
func (s *Store) PeeringSecrets(peeringID string) (*PeeringSecrets, error) {
	return s.PeeringSecretsWatch(nil, peeringID)
}

// PeeringSecretsWatch returns a peering's secrets, or nil, adding to ws
// (when not nil) a channel that fires when they change.
func (s *Store) PeeringSecretsWatch(ws memdb.WatchSet, peeringID string) (*PeeringSecrets, error) {
	tx := s.read(ws)
	defer tx.Abort()
	ch, raw, err := tx.FirstWatch(tableSecrets, "id", peeringID)
	if err != nil {
		return nil, err
	}
	if ws != nil {
		ws.Add(ch)
	}
	if raw == nil {
		return nil, nil
	}
	cp := *raw.(*PeeringSecrets)
	return &cp, nil
}

// TrustBundle returns a peer's trust bundle, or nil.
func (s *Store) TrustBundle(ws memdb.WatchSet, peer string) (uint64, *PeeringTrustBundle, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableTrustBundles)
	ch, raw, err := tx.FirstWatch(tableTrustBundles, "id", peer)
	if err != nil {
		return 0, nil, fmt.Errorf("look up trust bundle of %q: %w", peer, err)
	}
	if ws != nil {
		ws.Add(ch)
	}
	if raw == nil {
		return idx, nil, nil
	}
	return idx, raw.(*PeeringTrustBundle), nil
}

// Meta returns a cluster-wide value ("" when unset).
func (s *Store) Meta(key string) string {
	tx := s.read(nil)
	defer tx.Abort()
	raw, err := tx.First(tableMeta, "id", key)
	if err != nil || raw == nil {
		return ""
	}
	return raw.(*metaRow).Value
}

// CARoots returns the CA roots, the active one first.
func (s *Store) CARoots(ws memdb.WatchSet) (uint64, []*CARoot, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableCARoots)
	it, err := tx.Get(tableCARoots, "id")
	if err != nil {
		return 0, nil, fmt.Errorf("list CA roots: %w", err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	var out []*CARoot
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*CARoot))
	}
	slices.SortStableFunc(out, func(a, b *CARoot) int {
		switch {
		case a.Active && !b.Active:
			return -1
		case b.Active && !a.Active:
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return idx, out, nil
}

// ImportedNodes returns the names of the nodes imported from a peer, for
// purging them in batches.
func (s *Store) ImportedNodes(peer string, limit int) ([]string, error) {
	if peer == "" {
		return nil, errors.New("imported nodes: peer name required")
	}
	tx := s.read(nil)
	defer tx.Abort()
	it, err := tx.Get(tableNodes, "id_prefix", peer)
	if err != nil {
		return nil, fmt.Errorf("list nodes of peer %q: %w", peer, err)
	}
	var out []string
	for raw := it.Next(); raw != nil && (limit <= 0 || len(out) < limit); raw = it.Next() {
		if r := raw.(*nodeRow); r.PeerName == peer {
			out = append(out, r.Node.Node)
		}
	}
	return out, nil
}
