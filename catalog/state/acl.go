package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/internal/acl"
)

// The ACL system's rows, in Consul's shapes (consul/api's ACLToken,
// ACLPolicy, ACLRole decode them). Links from tokens and roles to policies
// and roles are kept by ID; reads fill in the current names and drop links
// to what was deleted, as Consul does.

// ACLLink names a policy or role a token or role links to. Writes may give
// either field; the store keeps the ID.
type ACLLink struct {
	ID   string `json:",omitempty"`
	Name string `json:",omitempty"`
}

// ACLServiceIdentity is a token's or role's service identity: the
// synthesized policy of acl.ServiceIdentityPolicy, in the datacenters
// listed (none = every datacenter).
type ACLServiceIdentity struct {
	ServiceName string
	Datacenters []string `json:",omitempty"`
}

// ACLNodeIdentity is a token's or role's node identity, valid in one
// datacenter.
type ACLNodeIdentity struct {
	NodeName   string
	Datacenter string
}

// ACLToken is a token. SecretHash is the SHA-256 of SecretID (hex): the
// index tokens are resolved by, and the only form of the secret a client
// node's mirror holds (SecretID is empty there).
type ACLToken struct {
	AccessorID        string
	SecretID          string `json:",omitempty"`
	SecretHash        string
	Description       string                `json:",omitempty"`
	Policies          []ACLLink             `json:",omitempty"`
	Roles             []ACLLink             `json:",omitempty"`
	ServiceIdentities []*ACLServiceIdentity `json:",omitempty"`
	NodeIdentities    []*ACLNodeIdentity    `json:",omitempty"`
	Local             bool                  `json:",omitempty"`
	ExpirationTime    *time.Time            `json:",omitempty"`
	ExpirationTTL     time.Duration         `json:",omitempty"`
	CreateTime        time.Time
	Hash              []byte `json:",omitempty"`
	CreateIndex       uint64
	ModifyIndex       uint64
}

// Expired reports whether the token has expired at now.
func (t *ACLToken) Expired(now time.Time) bool {
	return t.ExpirationTime != nil && !now.Before(*t.ExpirationTime)
}

// ACLPolicy is a named rules document.
type ACLPolicy struct {
	ID          string
	Name        string
	Description string   `json:",omitempty"`
	Rules       string   `json:",omitempty"`
	Datacenters []string `json:",omitempty"`
	Hash        []byte   `json:",omitempty"`
	CreateIndex uint64
	ModifyIndex uint64
}

// ACLRole is a named set of policies and identities tokens link to.
type ACLRole struct {
	ID                string
	Name              string
	Description       string                `json:",omitempty"`
	Policies          []ACLLink             `json:",omitempty"`
	ServiceIdentities []*ACLServiceIdentity `json:",omitempty"`
	NodeIdentities    []*ACLNodeIdentity    `json:",omitempty"`
	Hash              []byte                `json:",omitempty"`
	CreateIndex       uint64
	ModifyIndex       uint64
}

// ACLBootstrap is the record of the ACL bootstrap: once it exists, a
// bootstrap request must carry its ResetIndex (Consul's reset procedure)
// to be allowed again.
type ACLBootstrap struct {
	// ResetIndex is the raft index of the last bootstrap.
	ResetIndex uint64
}

// The builtins, as in Consul.
const (
	// ACLManagementPolicyID is the builtin global-management policy.
	ACLManagementPolicyID   = "00000000-0000-0000-0000-000000000001"
	ACLManagementPolicyName = "global-management"
	// ACLManagementRules are the builtin policy's rules, Consul's text.
	ACLManagementRules = `acl = "write"
agent_prefix "" {
  policy = "write"
}
event_prefix "" {
  policy = "write"
}
key_prefix "" {
  policy = "write"
}
keyring = "write"
node_prefix "" {
  policy = "write"
}
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "write"
  intentions = "write"
}
session_prefix "" {
  policy = "write"
}`
	// ACLAnonymousTokenID is the anonymous token's AccessorID; its SecretID
	// is ACLAnonymousSecret.
	ACLAnonymousTokenID = "00000000-0000-0000-0000-000000000002"
	ACLAnonymousSecret  = "anonymous"
)

// Bounds of a token's ExpirationTTL (Consul's defaults).
const (
	ACLMinExpirationTTL = time.Minute
	ACLMaxExpirationTTL = 24 * time.Hour
)

// Errors of ACL writes. Their text crosses raft (catalog.ApplyError), so
// the HTTP API maps them back by prefix: keep each message's start.
var (
	// ErrACLBootstrapDone is a bootstrap after the first; the error's text
	// names the reset index (Consul: "ACL bootstrap no longer allowed
	// (reset index: N)").
	ErrACLBootstrapDone = errors.New("ACL bootstrap no longer allowed")
	// ErrACLNotFound is an update or read of a token, policy or role that
	// does not exist.
	ErrACLNotFound = errors.New("ACL not found")
	// ErrACLInvalid is a write the ACL system refuses (duplicate name,
	// unknown link, bad rules, a builtin changed).
	ErrACLInvalid = errors.New("invalid ACL write")
)

// ACLBootstrapDoneError is ErrACLBootstrapDone with the reset index.
type ACLBootstrapDoneError struct{ ResetIndex uint64 }

func (e *ACLBootstrapDoneError) Error() string {
	return fmt.Sprintf("%v (reset index: %d)", ErrACLBootstrapDone, e.ResetIndex)
}

// Is makes errors.Is(err, ErrACLBootstrapDone) true.
func (e *ACLBootstrapDoneError) Is(target error) bool { return target == ErrACLBootstrapDone }

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrACLInvalid, fmt.Sprintf(format, a...))
}

// ACLTokenRequest creates or updates a token. Create refuses an AccessorID
// or SecretID in use; an update needs the token to exist, keeps its
// SecretID, Local, ExpirationTime and CreateTime, and refuses another
// SecretID.
type ACLTokenRequest struct {
	Token  *ACLToken
	Create bool `json:",omitempty"`
}

// ACLBootstrapRequest is the bootstrap: Token (a management token) is
// written only if no bootstrap happened yet, or ResetIndex is the record's.
// A token that already exists (tokens.initial_management's, written by an
// older leader) is kept as it is.
type ACLBootstrapRequest struct {
	Token      *ACLToken
	ResetIndex uint64 `json:",omitempty"`
}

// ACLRequest is one ACL write: exactly one field is set. Deletes name IDs.
type ACLRequest struct {
	Token        *ACLTokenRequest     `json:",omitempty"`
	Bootstrap    *ACLBootstrapRequest `json:",omitempty"`
	DeleteToken  string               `json:",omitempty"`
	Policy       *ACLPolicy           `json:",omitempty"`
	DeletePolicy string               `json:",omitempty"`
	Role         *ACLRole             `json:",omitempty"`
	DeleteRole   string               `json:",omitempty"`
}

const (
	tableACLTokens    = "acl-tokens"
	tableACLPolicies  = "acl-policies"
	tableACLRoles     = "acl-roles"
	tableACLBootstrap = "acl-bootstrap"
)

// aclTables are the ACL system's tables, whose index the resolver's cache
// follows.
var aclTables = [...]string{tableACLTokens, tableACLPolicies, tableACLRoles, tableACLBootstrap}

type aclBootstrapRow struct {
	ID string
	ACLBootstrap
}

func aclSchema() map[string]*memdb.TableSchema {
	ix := func(name string, parts func(o any) []string) *memdb.IndexSchema {
		s := index(parts)
		s.Name, s.Unique = name, true
		return s
	}
	return map[string]*memdb.TableSchema{
		tableACLTokens: {Name: tableACLTokens, Indexes: map[string]*memdb.IndexSchema{
			"id":     ix("id", func(o any) []string { return []string{o.(*ACLToken).AccessorID} }),
			"secret": ix("secret", func(o any) []string { return []string{o.(*ACLToken).SecretHash} }),
		}},
		tableACLPolicies: {Name: tableACLPolicies, Indexes: map[string]*memdb.IndexSchema{
			"id":   ix("id", func(o any) []string { return []string{o.(*ACLPolicy).ID} }),
			"name": ix("name", func(o any) []string { return []string{o.(*ACLPolicy).Name} }),
		}},
		tableACLRoles: {Name: tableACLRoles, Indexes: map[string]*memdb.IndexSchema{
			"id":   ix("id", func(o any) []string { return []string{o.(*ACLRole).ID} }),
			"name": ix("name", func(o any) []string { return []string{o.(*ACLRole).Name} }),
		}},
		tableACLBootstrap: {Name: tableACLBootstrap, Indexes: map[string]*memdb.IndexSchema{
			"id": ix("id", func(o any) []string { return []string{o.(*aclBootstrapRow).ID} }),
		}},
	}
}

// HashSecret is the SHA-256 of a token's secret, hex: what tokens are
// indexed by.
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// aclNameRE is Consul's rule for policy and role names.
var aclNameRE = regexp.MustCompile(`^[A-Za-z0-9\-_]{1,128}$`)

// ValidACLName reports why name is not a valid policy or role name.
func ValidACLName(kind, name string) error {
	if !aclNameRE.MatchString(name) {
		return invalid("%s name %q is invalid: use 1 to 128 letters, digits, '-' and '_'", kind, name)
	}
	return nil
}

// ValidUUID reports why id is not a UUID (Consul's IDs are).
func ValidUUID(what, id string) error {
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return invalid("%s %q is not a UUID", what, id)
	}
	return nil
}

// validSecret reports whether a secret is a UUID; the error never holds
// the secret.
func validSecret(what, secret string) error {
	if _, err := uuid.Parse(secret); err != nil || len(secret) != 36 {
		return invalid("%s is not a UUID", what)
	}
	return nil
}

// ValidSecret reports why secret is not a usable SecretID (a UUID), in
// words that never repeat it.
func ValidSecret(what, secret string) error { return validSecret(what, secret) }

// ---- writes ----

// ACLApply applies an ACLRequest.
func (s *Store) ACLApply(idx uint64, req *ACLRequest) error {
	if req == nil {
		return errors.New("acl request: empty")
	}
	n := 0
	for _, set := range []bool{req.Token != nil, req.Bootstrap != nil, req.DeleteToken != "", req.Policy != nil,
		req.DeletePolicy != "", req.Role != nil, req.DeleteRole != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("acl request: set exactly one field")
	}
	tx := s.write()
	defer tx.Abort()
	var err error
	switch {
	case req.Token != nil:
		err = aclTokenSet(tx, idx, req.Token)
	case req.Bootstrap != nil:
		err = aclBootstrap(tx, idx, req.Bootstrap)
	case req.DeleteToken != "":
		err = aclTokenDelete(tx, idx, req.DeleteToken)
	case req.Policy != nil:
		err = aclPolicySet(tx, idx, req.Policy)
	case req.DeletePolicy != "":
		err = aclPolicyDelete(tx, idx, req.DeletePolicy)
	case req.Role != nil:
		err = aclRoleSet(tx, idx, req.Role)
	case req.DeleteRole != "":
		err = aclRoleDelete(tx, idx, req.DeleteRole)
	}
	if err != nil {
		return err
	}
	tx.Commit()
	return nil
}

func aclBootstrap(tx *memdb.Txn, idx uint64, req *ACLBootstrapRequest) error {
	raw, err := tx.First(tableACLBootstrap, "id", "bootstrap")
	if err != nil {
		return fmt.Errorf("read the ACL bootstrap record: %w", err)
	}
	if raw != nil {
		if rec := raw.(*aclBootstrapRow); req.ResetIndex == 0 || req.ResetIndex != rec.ResetIndex {
			return &ACLBootstrapDoneError{ResetIndex: rec.ResetIndex}
		}
	}
	if req.Token == nil {
		return invalid("bootstrap without a token")
	}
	existing, err := tx.First(tableACLTokens, "secret", HashSecret(req.Token.SecretID))
	if err != nil {
		return fmt.Errorf("look up the bootstrap token: %w", err)
	}
	if existing == nil {
		if err := aclTokenSet(tx, idx, &ACLTokenRequest{Token: req.Token, Create: true}); err != nil {
			return err
		}
	}
	if err := tx.Insert(tableACLBootstrap, &aclBootstrapRow{ID: "bootstrap", ACLBootstrap: ACLBootstrap{ResetIndex: idx}}); err != nil {
		return fmt.Errorf("record the ACL bootstrap: %w", err)
	}
	return bumpIndex(tx, idx, tableACLBootstrap)
}

func aclTokenSet(tx *memdb.Txn, idx uint64, req *ACLTokenRequest) error {
	if req.Token == nil {
		return invalid("token write without a token")
	}
	t := *req.Token
	if err := ValidUUID("AccessorID", t.AccessorID); err != nil {
		return err
	}
	if t.SecretID == ACLAnonymousSecret && !strings.EqualFold(t.AccessorID, ACLAnonymousTokenID) {
		return invalid("Invalid Token: SecretID %q is the anonymous token's", ACLAnonymousSecret)
	}
	if t.SecretID != ACLAnonymousSecret {
		if err := validSecret("SecretID", t.SecretID); err != nil && (req.Create || t.SecretID != "") {
			return err
		}
	}
	raw, err := tx.First(tableACLTokens, "id", t.AccessorID)
	if err != nil {
		return fmt.Errorf("look up token %s: %w", t.AccessorID, err)
	}
	if req.Create {
		if raw != nil {
			return invalid("Invalid Token: AccessorID is already in use")
		}
		if t.SecretID == "" {
			return invalid("Invalid Token: a new token needs its SecretID")
		}
		if other, err := tx.First(tableACLTokens, "secret", HashSecret(t.SecretID)); err != nil {
			return fmt.Errorf("look up token by secret: %w", err)
		} else if other != nil {
			return invalid("Invalid Token: SecretID is already in use")
		}
		if t.ExpirationTTL != 0 && (t.ExpirationTTL < ACLMinExpirationTTL || t.ExpirationTTL > ACLMaxExpirationTTL) {
			return invalid("Invalid Token: ExpirationTTL %s is not between %s and %s", t.ExpirationTTL, ACLMinExpirationTTL, ACLMaxExpirationTTL)
		}
		if t.ExpirationTTL != 0 && t.ExpirationTime == nil {
			return invalid("Invalid Token: ExpirationTTL without ExpirationTime")
		}
		t.CreateIndex = idx
	} else {
		if raw == nil {
			return fmt.Errorf("%w: cannot find token %s to update", ErrACLNotFound, t.AccessorID)
		}
		old := raw.(*ACLToken)
		if t.SecretID != "" && t.SecretID != old.SecretID {
			return invalid("Changing a token's SecretID is not permitted")
		}
		if t.Local != old.Local {
			return invalid("Cannot toggle local mode of %s", t.AccessorID)
		}
		if t.ExpirationTime != nil && (old.ExpirationTime == nil || !t.ExpirationTime.Equal(*old.ExpirationTime)) {
			return invalid("Cannot change expiration time of %s", t.AccessorID)
		}
		if t.ExpirationTTL != 0 && t.ExpirationTTL != old.ExpirationTTL {
			return invalid("Cannot change expiration time of %s", t.AccessorID)
		}
		t.SecretID, t.ExpirationTime, t.ExpirationTTL, t.CreateTime = old.SecretID, old.ExpirationTime, old.ExpirationTTL, old.CreateTime
		t.CreateIndex = old.CreateIndex
	}
	t.SecretHash = HashSecret(t.SecretID)
	if t.Policies, err = linkIDs(tx, tableACLPolicies, "policy", t.Policies); err != nil {
		return err
	}
	if t.Roles, err = linkIDs(tx, tableACLRoles, "role", t.Roles); err != nil {
		return err
	}
	if err := validIdentities(t.ServiceIdentities, t.NodeIdentities); err != nil {
		return err
	}
	t.ModifyIndex = idx
	t.Hash = contentHash(t.Description, t.Policies, t.Roles, t.ServiceIdentities, t.NodeIdentities, t.Local)
	if err := tx.Insert(tableACLTokens, &t); err != nil {
		return fmt.Errorf("insert token %s: %w", t.AccessorID, err)
	}
	return bumpIndex(tx, idx, tableACLTokens)
}

func aclTokenDelete(tx *memdb.Txn, idx uint64, id string) error {
	if strings.EqualFold(id, ACLAnonymousTokenID) {
		return invalid("Delete operation not permitted on the anonymous token")
	}
	return deleteRows(tx, idx, tableACLTokens, "id", id)
}

func aclPolicySet(tx *memdb.Txn, idx uint64, p *ACLPolicy) error {
	cp := *p
	if err := ValidUUID("policy ID", cp.ID); err != nil {
		return err
	}
	if err := ValidACLName("policy", cp.Name); err != nil {
		return err
	}
	if _, err := acl.ParseRules(cp.Rules); err != nil {
		return invalid("Failed parsing rules: %v", err)
	}
	raw, err := tx.First(tableACLPolicies, "id", cp.ID)
	if err != nil {
		return fmt.Errorf("look up policy %s: %w", cp.ID, err)
	}
	if other, err := tx.First(tableACLPolicies, "name", cp.Name); err != nil {
		return fmt.Errorf("look up policy %q: %w", cp.Name, err)
	} else if other != nil && !strings.EqualFold(other.(*ACLPolicy).ID, cp.ID) {
		return invalid("Invalid Policy: A Policy with Name %q already exists", cp.Name)
	}
	cp.CreateIndex = idx
	if raw != nil {
		old := raw.(*ACLPolicy)
		cp.CreateIndex = old.CreateIndex
		if old.ID == ACLManagementPolicyID {
			if cp.Rules != old.Rules {
				return invalid("Changing the Rules for the builtin global-management policy is not permitted")
			}
			if len(cp.Datacenters) != 0 {
				return invalid("Changing the Datacenters of the builtin global-management policy is not permitted")
			}
		}
	}
	cp.ModifyIndex = idx
	cp.Hash = contentHash(cp.Name, cp.Description, cp.Rules, cp.Datacenters)
	if err := tx.Insert(tableACLPolicies, &cp); err != nil {
		return fmt.Errorf("insert policy %s: %w", cp.ID, err)
	}
	return bumpIndex(tx, idx, tableACLPolicies)
}

func aclPolicyDelete(tx *memdb.Txn, idx uint64, id string) error {
	if strings.EqualFold(id, ACLManagementPolicyID) {
		return invalid("Deletion of the builtin global-management policy is not permitted")
	}
	return deleteRows(tx, idx, tableACLPolicies, "id", id)
}

func aclRoleSet(tx *memdb.Txn, idx uint64, r *ACLRole) error {
	cp := *r
	if err := ValidUUID("role ID", cp.ID); err != nil {
		return err
	}
	if err := ValidACLName("role", cp.Name); err != nil {
		return err
	}
	raw, err := tx.First(tableACLRoles, "id", cp.ID)
	if err != nil {
		return fmt.Errorf("look up role %s: %w", cp.ID, err)
	}
	if other, err := tx.First(tableACLRoles, "name", cp.Name); err != nil {
		return fmt.Errorf("look up role %q: %w", cp.Name, err)
	} else if other != nil && !strings.EqualFold(other.(*ACLRole).ID, cp.ID) {
		return invalid("Invalid Role: A Role with Name %q already exists", cp.Name)
	}
	if cp.Policies, err = linkIDs(tx, tableACLPolicies, "policy", cp.Policies); err != nil {
		return err
	}
	if err := validIdentities(cp.ServiceIdentities, cp.NodeIdentities); err != nil {
		return err
	}
	cp.CreateIndex = idx
	if raw != nil {
		cp.CreateIndex = raw.(*ACLRole).CreateIndex
	}
	cp.ModifyIndex = idx
	cp.Hash = contentHash(cp.Name, cp.Description, cp.Policies, cp.ServiceIdentities, cp.NodeIdentities)
	if err := tx.Insert(tableACLRoles, &cp); err != nil {
		return fmt.Errorf("insert role %s: %w", cp.ID, err)
	}
	return bumpIndex(tx, idx, tableACLRoles)
}

func aclRoleDelete(tx *memdb.Txn, idx uint64, id string) error {
	return deleteRows(tx, idx, tableACLRoles, "id", id)
}

// linkIDs resolves links given by ID or name to IDs (the stored form),
// refusing what does not exist, and drops duplicates.
func linkIDs(tx *memdb.Txn, table, kind string, links []ACLLink) ([]ACLLink, error) {
	var out []ACLLink
	for _, l := range links {
		var raw any
		var err error
		switch {
		case l.ID != "":
			raw, err = tx.First(table, "id", l.ID)
		case l.Name != "":
			raw, err = tx.First(table, "name", l.Name)
		default:
			return nil, invalid("a %s link needs an ID or a Name", kind)
		}
		if err != nil {
			return nil, fmt.Errorf("look up %s %s%s: %w", kind, l.ID, l.Name, err)
		}
		if raw == nil {
			if l.ID != "" {
				return nil, invalid("No such ACL %s with ID %q", kind, l.ID)
			}
			return nil, invalid("No such ACL %s with name %q", kind, l.Name)
		}
		id := ""
		switch r := raw.(type) {
		case *ACLPolicy:
			id = r.ID
		case *ACLRole:
			id = r.ID
		}
		if !slices.ContainsFunc(out, func(x ACLLink) bool { return x.ID == id }) {
			out = append(out, ACLLink{ID: id})
		}
	}
	return out, nil
}

func validIdentities(svcs []*ACLServiceIdentity, nodes []*ACLNodeIdentity) error {
	for _, s := range svcs {
		if s == nil || s.ServiceName == "" {
			return invalid("a service identity needs a ServiceName")
		}
		if !ValidACLServiceIdentityName(s.ServiceName) {
			return invalid("service identity %q has an invalid name: use lowercase letters, digits and '-'", s.ServiceName)
		}
	}
	for _, n := range nodes {
		if n == nil || n.NodeName == "" || n.Datacenter == "" {
			return invalid("a node identity needs a NodeName and a Datacenter")
		}
		if !ValidACLServiceIdentityName(n.NodeName) {
			return invalid("node identity %q has an invalid name: use lowercase letters, digits and '-'", n.NodeName)
		}
	}
	return nil
}

var identityNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$`)

// ValidACLServiceIdentityName is Consul's rule for identity names.
func ValidACLServiceIdentityName(name string) bool {
	return len(name) <= 256 && identityNameRE.MatchString(name)
}

func contentHash(parts ...any) []byte {
	b, _ := json.Marshal(parts) // plain data: cannot fail
	h := sha256.Sum256(b)
	return h[:]
}

// ---- reads ----

// ACLIndex returns the highest index of the ACL tables: a cache of what
// was compiled from them is current while it stays the same.
func (s *Store) ACLIndex() uint64 {
	tx := s.read(nil)
	defer tx.Abort()
	return tablesIndex(tx, nil, aclTables[:]...)
}

// ACLWatch returns the ACL tables' index and channels of which one
// closes once any of them changes (or the whole state is replaced): a
// cache checks them with a non-blocking receive instead of reading the
// store on every request.
func (s *Store) ACLWatch() (uint64, []<-chan struct{}) {
	db, abandon := s.current()
	tx := db.Txn(false)
	defer tx.Abort()
	chans := []<-chan struct{}{abandon}
	var idx uint64
	for _, t := range aclTables {
		ch, raw, err := tx.FirstWatch(tableIndex, "id", t)
		if err != nil {
			continue
		}
		chans = append(chans, ch)
		if raw != nil {
			idx = max(idx, raw.(*indexRow).Index)
		}
	}
	return idx, chans
}

// ACLBootstrapRecord returns the bootstrap record, or nil before the
// first bootstrap.
func (s *Store) ACLBootstrapRecord() *ACLBootstrap {
	tx := s.read(nil)
	defer tx.Abort()
	raw, err := tx.First(tableACLBootstrap, "id", "bootstrap")
	if err != nil || raw == nil {
		return nil
	}
	rec := raw.(*aclBootstrapRow).ACLBootstrap
	return &rec
}

// resolveLinks returns links with their current names, dropping what was
// deleted.
func resolveLinks(tx *memdb.Txn, table string, links []ACLLink) []ACLLink {
	var out []ACLLink
	for _, l := range links {
		raw, err := tx.First(table, "id", l.ID)
		if err != nil || raw == nil {
			continue
		}
		switch r := raw.(type) {
		case *ACLPolicy:
			out = append(out, ACLLink{ID: r.ID, Name: r.Name})
		case *ACLRole:
			out = append(out, ACLLink{ID: r.ID, Name: r.Name})
		}
	}
	return out
}

func readToken(tx *memdb.Txn, raw any) *ACLToken {
	t := *raw.(*ACLToken)
	t.Policies = resolveLinks(tx, tableACLPolicies, t.Policies)
	t.Roles = resolveLinks(tx, tableACLRoles, t.Roles)
	return &t
}

// ACLToken returns a token by AccessorID, with its links' current names,
// or nil.
func (s *Store) ACLToken(ws memdb.WatchSet, accessor string) (uint64, *ACLToken, error) {
	return s.aclTokenBy(ws, "id", accessor)
}

// ACLTokenBySecret returns the token whose secret is secret, or nil.
func (s *Store) ACLTokenBySecret(ws memdb.WatchSet, secret string) (uint64, *ACLToken, error) {
	return s.aclTokenBy(ws, "secret", HashSecret(secret))
}

func (s *Store) aclTokenBy(ws memdb.WatchSet, index, key string) (uint64, *ACLToken, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableACLTokens, tableACLPolicies, tableACLRoles)
	ch, raw, err := tx.FirstWatch(tableACLTokens, index, key)
	if err != nil {
		return 0, nil, fmt.Errorf("look up token: %w", err)
	}
	if ws != nil {
		ws.Add(ch)
	}
	if raw == nil {
		return idx, nil, nil
	}
	return idx, readToken(tx, raw), nil
}

// ACLTokenFilter selects tokens of a list: those linking to a policy or a
// role (by ID), directly; empty = all.
type ACLTokenFilter struct {
	Policy string
	Role   string
}

// ACLTokens lists tokens, oldest first, with their links' current names.
func (s *Store) ACLTokens(ws memdb.WatchSet, f ACLTokenFilter) (uint64, []*ACLToken, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableACLTokens, tableACLPolicies, tableACLRoles)
	it, err := tx.Get(tableACLTokens, "id")
	if err != nil {
		return 0, nil, fmt.Errorf("list tokens: %w", err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	has := func(links []ACLLink, id string) bool {
		return slices.ContainsFunc(links, func(l ACLLink) bool { return strings.EqualFold(l.ID, id) })
	}
	var out []*ACLToken
	for raw := it.Next(); raw != nil; raw = it.Next() {
		t := readToken(tx, raw)
		if (f.Policy != "" && !has(t.Policies, f.Policy)) || (f.Role != "" && !has(t.Roles, f.Role)) {
			continue
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *ACLToken) int {
		if c := a.CreateTime.Compare(b.CreateTime); c != 0 {
			return c
		}
		return strings.Compare(a.AccessorID, b.AccessorID)
	})
	return idx, out, nil
}

// ACLPolicy returns a policy by ID, or by name when byName, or nil.
func (s *Store) ACLPolicy(ws memdb.WatchSet, key string, byName bool) (uint64, *ACLPolicy, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableACLPolicies)
	raw, err := firstBy(tx, ws, tableACLPolicies, key, byName)
	if err != nil || raw == nil {
		return idx, nil, err
	}
	return idx, raw.(*ACLPolicy), nil
}

// ACLPolicies lists the policies by name.
func (s *Store) ACLPolicies(ws memdb.WatchSet) (uint64, []*ACLPolicy, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableACLPolicies)
	it, err := tx.Get(tableACLPolicies, "name")
	if err != nil {
		return 0, nil, fmt.Errorf("list policies: %w", err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	var out []*ACLPolicy
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*ACLPolicy))
	}
	return idx, out, nil
}

func readRole(tx *memdb.Txn, raw any) *ACLRole {
	r := *raw.(*ACLRole)
	r.Policies = resolveLinks(tx, tableACLPolicies, r.Policies)
	return &r
}

// ACLRole returns a role by ID, or by name when byName, with its policy
// links' current names, or nil.
func (s *Store) ACLRole(ws memdb.WatchSet, key string, byName bool) (uint64, *ACLRole, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableACLRoles, tableACLPolicies)
	raw, err := firstBy(tx, ws, tableACLRoles, key, byName)
	if err != nil || raw == nil {
		return idx, nil, err
	}
	return idx, readRole(tx, raw), nil
}

// ACLRoles lists the roles by name; policy, when set, keeps those linking
// to that policy ID.
func (s *Store) ACLRoles(ws memdb.WatchSet, policy string) (uint64, []*ACLRole, error) {
	tx := s.read(ws)
	defer tx.Abort()
	idx := tablesIndex(tx, ws, tableACLRoles, tableACLPolicies)
	it, err := tx.Get(tableACLRoles, "name")
	if err != nil {
		return 0, nil, fmt.Errorf("list roles: %w", err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	var out []*ACLRole
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := readRole(tx, raw)
		if policy != "" && !slices.ContainsFunc(r.Policies, func(l ACLLink) bool { return strings.EqualFold(l.ID, policy) }) {
			continue
		}
		out = append(out, r)
	}
	return idx, out, nil
}

func firstBy(tx *memdb.Txn, ws memdb.WatchSet, table, key string, byName bool) (any, error) {
	index := "id"
	if byName {
		index = "name"
	}
	ch, raw, err := tx.FirstWatch(table, index, key)
	if err != nil {
		return nil, fmt.Errorf("look up %s %q: %w", table, key, err)
	}
	if ws != nil {
		ws.Add(ch)
	}
	return raw, nil
}

// ACLResolved is what a token grants, read in one transaction: the token,
// its policies (directly and through its roles, each once), and its
// identities (its own and its roles').
type ACLResolved struct {
	Token             *ACLToken
	Policies          []*ACLPolicy
	ServiceIdentities []*ACLServiceIdentity
	NodeIdentities    []*ACLNodeIdentity
}

// ACLResolve reads what the token with secret grants; a nil Token = no
// such token. It returns the ACL tables' index the answer is current at.
func (s *Store) ACLResolve(secret string) (uint64, *ACLResolved, error) {
	tx := s.read(nil)
	defer tx.Abort()
	idx := tablesIndex(tx, nil, aclTables[:]...)
	raw, err := tx.First(tableACLTokens, "secret", HashSecret(secret))
	if err != nil {
		return 0, nil, fmt.Errorf("look up token: %w", err)
	}
	if raw == nil {
		return idx, &ACLResolved{}, nil
	}
	t := readToken(tx, raw)
	out := &ACLResolved{Token: t, ServiceIdentities: t.ServiceIdentities, NodeIdentities: t.NodeIdentities}
	seen := map[string]bool{}
	addPolicy := func(id string) {
		if seen[id] {
			return
		}
		seen[id] = true
		if p, err := tx.First(tableACLPolicies, "id", id); err == nil && p != nil {
			out.Policies = append(out.Policies, p.(*ACLPolicy))
		}
	}
	for _, l := range t.Policies {
		addPolicy(l.ID)
	}
	for _, l := range t.Roles {
		r, err := tx.First(tableACLRoles, "id", l.ID)
		if err != nil || r == nil {
			continue
		}
		role := r.(*ACLRole)
		for _, pl := range role.Policies {
			addPolicy(pl.ID)
		}
		out.ServiceIdentities = append(out.ServiceIdentities, role.ServiceIdentities...)
		out.NodeIdentities = append(out.NodeIdentities, role.NodeIdentities...)
	}
	return idx, out, nil
}
