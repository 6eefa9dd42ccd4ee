package catalog

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/hashicorp/memberlist"
)

// The gossip keyring. memberlist encrypts every gossip packet and stream with
// the keyring's primary key and decrypts with any key of the ring; rotating
// is Consul's three steps, each applied to every live member: install the new
// key, use it (make it primary), remove the old one.
//
// The operation travels to the other members as memberlist user messages
// sent over gossip's reliable (TCP) channel, the way Consul fans it out as a
// serf query. Gossip is the channel for it because it is the one node-to-node
// channel already authenticated by the very keys being changed: only a holder
// of a key of the ring can send a message a member accepts. (The internal
// gRPC port is still plaintext and unauthenticated; a keyring call there
// would let anyone who reaches it install a key of their own.)

// KeyringFile is the name of the keyring file in a node's data directory:
// a JSON list of base64 keys, primary first (Consul's serf/local.keyring).
const KeyringFile = "keyring"

// KeyringOp is an operation on the gossip keyring.
type KeyringOp string

// The keyring operations: Consul's GET, POST, PUT and DELETE of
// /v1/operator/keyring.
const (
	KeyringList    KeyringOp = "list"
	KeyringInstall KeyringOp = "install"
	KeyringUse     KeyringOp = "use"
	KeyringRemove  KeyringOp = "remove"
)

// Errors of a keyring operation.
var (
	// ErrGossipNotEncrypted means this node's gossip has no keyring: it was
	// started without a key, and a keyring cannot be added at run time.
	ErrGossipNotEncrypted = errors.New("gossip is not encrypted on this node: there is no keyring to change; start every agent with -encrypt (peerd keygen) to use one")
	// ErrRemovePrimaryKey refuses removing the key gossip encrypts with.
	ErrRemovePrimaryKey = errors.New("the key is the primary gossip key, which encrypts all gossip: make another installed key primary first (peerctl keyring use KEY), then remove this one")
	// ErrKeyNotInstalled refuses making primary a key the node does not hold.
	ErrKeyNotInstalled = errors.New("the key is not installed: install it on every node first (peerctl keyring install KEY)")
)

// KeyringResult is one member's answer to a keyring operation: its keyring
// after the operation, or what went wrong.
type KeyringResult struct {
	// Node is the member's name.
	Node string
	// Keys are its keys in base64, primary first; empty when Error is set
	// and the member did not answer.
	Keys []string
	// PrimaryKey is its primary key in base64.
	PrimaryKey string
	// Error says why the operation failed on this member; "" = it worked.
	Error string `json:",omitempty"`
}

// keyringMsg tags the gossip user messages of the keyring protocol.
const (
	keyringMsgRequest byte = 1 + iota
	keyringMsgReply
)

// keyringRequest asks a member to apply Op; From is the node to answer.
type keyringRequest struct {
	ID   uint64
	From string
	Op   KeyringOp
	Key  []byte `json:",omitempty"`
}

// keyringReply answers request ID.
type keyringReply struct {
	ID     uint64
	Result KeyringResult
}

// keyring is this node's gossip keyring and its file.
type keyring struct {
	// ring is memberlist's keyring; nil when gossip is not encrypted.
	ring *memberlist.Keyring
	// path is the keyring file; "" in memory (dev mode).
	path string
}

// keyringPath is where this node keeps its keyring: "" when nothing is
// written to disk.
func (c *Config) keyringPath() string {
	if c.InMemory || c.DataDir == "" {
		return ""
	}
	return filepath.Join(c.DataDir, KeyringFile)
}

// openKeyring builds the node's keyring: the keyring file when there is one
// (the keys as the last rotation left them), else EncryptKey, which is then
// written to a new keyring file. No key at all: gossip is not encrypted.
func (c *Cluster) openKeyring() (*keyring, error) {
	k := &keyring{path: c.cfg.keyringPath()}
	if k.path != "" {
		keys, err := readKeyringFile(k.path)
		switch {
		case err == nil:
			if len(c.cfg.EncryptKey) > 0 && !slices.ContainsFunc(keys, func(b []byte) bool { return bytes.Equal(b, c.cfg.EncryptKey) }) {
				c.log.Info("using the gossip keyring of the data directory: the -encrypt key is only the first key of a node without one, and is no longer in the ring", "file", k.path)
			}
			if k.ring, err = memberlist.NewKeyring(keys[1:], keys[0]); err != nil {
				return nil, fmt.Errorf("gossip keyring file %s: %w", k.path, err)
			}
			return k, nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
	}
	if len(c.cfg.EncryptKey) == 0 {
		return k, nil
	}
	ring, err := memberlist.NewKeyring(nil, c.cfg.EncryptKey)
	if err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	k.ring = ring
	if err := k.save(); err != nil {
		return nil, err
	}
	return k, nil
}

// readKeyringFile reads a keyring file: a JSON list of base64 keys, primary
// first.
func readKeyringFile(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read gossip keyring: %w", err)
	}
	var encoded []string
	if err := json.Unmarshal(b, &encoded); err != nil {
		return nil, fmt.Errorf("gossip keyring file %s: not a JSON list of base64 keys: %w (restore it, or delete it to start again from -encrypt)", path, err)
	}
	if len(encoded) == 0 {
		return nil, fmt.Errorf("gossip keyring file %s holds no key: delete it to start again from -encrypt", path)
	}
	keys := make([][]byte, 0, len(encoded))
	for i, e := range encoded {
		key, err := base64.StdEncoding.DecodeString(e)
		if err == nil {
			err = memberlist.ValidateKey(key)
		}
		if err != nil {
			return nil, fmt.Errorf("gossip keyring file %s: key %d: %w (restore the file, or delete it to start again from -encrypt)", path, i+1, err)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// save writes the keyring file (0600), replacing it atomically.
func (k *keyring) save() error {
	if k.path == "" {
		return nil
	}
	b, err := json.Marshal(encodeKeys(k.ring.GetKeys()))
	if err != nil {
		return fmt.Errorf("encode gossip keyring: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(k.path), 0o700); err != nil {
		return fmt.Errorf("create the directory of the gossip keyring: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(k.path), KeyringFile+".*.tmp")
	if err != nil {
		return fmt.Errorf("write gossip keyring: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write gossip keyring: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write gossip keyring: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write gossip keyring: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write gossip keyring: %w", err)
	}
	if err := os.Rename(tmp.Name(), k.path); err != nil {
		return fmt.Errorf("write gossip keyring: %w", err)
	}
	return nil
}

func encodeKeys(keys [][]byte) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, base64.StdEncoding.EncodeToString(k))
	}
	return out
}

// GossipEncrypted reports whether this node's gossip is encrypted.
func (c *Cluster) GossipEncrypted() bool {
	return c.keyring != nil && c.keyring.ring != nil
}

// GossipPrimaryKey is the base64 key gossip is encrypted with now (after
// any rotation), for join tokens to carry; "" when gossip is not encrypted.
func (c *Cluster) GossipPrimaryKey() string {
	if !c.GossipEncrypted() {
		return ""
	}
	return base64.StdEncoding.EncodeToString(c.keyring.ring.GetPrimaryKey())
}

// Keyring applies op to the keyring of every live member, this one last, and
// returns each member's answer sorted by node name. key is the key to
// install, use or remove (16, 24 or 32 bytes); nil for KeyringList. An
// error means the operation was not sent at all (bad key, no keyring, the
// primary key to remove); a member that failed or did not answer within
// ctx (bounded by Timing.ApplyTimeout) has its Error set.
func (c *Cluster) Keyring(ctx context.Context, op KeyringOp, key []byte) ([]KeyringResult, error) {
	if c.ctx.Err() != nil || c.ml == nil {
		return nil, ErrShutdown
	}
	switch op {
	case KeyringList:
	case KeyringInstall, KeyringUse, KeyringRemove:
		if err := memberlist.ValidateKey(key); err != nil {
			return nil, fmt.Errorf("gossip key is %d bytes: want 16, 24 or 32 (base64 of `peerd keygen`)", len(key))
		}
	default:
		return nil, fmt.Errorf("keyring operation %q: want list, install, use or remove", op)
	}
	if !c.GossipEncrypted() {
		return nil, ErrGossipNotEncrypted
	}
	if op == KeyringRemove && bytes.Equal(c.keyring.ring.GetPrimaryKey(), key) {
		return nil, ErrRemovePrimaryKey
	}
	ctx, cancel := context.WithTimeout(ctx, c.timing.ApplyTimeout)
	defer cancel()

	self := c.cfg.NodeName
	targets := c.aliveNodes(self)
	id := c.keyringSeq.Add(1)
	replies := make(chan KeyringResult, len(targets))
	c.keyringMu.Lock()
	c.keyringPending[id] = replies
	c.keyringMu.Unlock()
	defer func() {
		c.keyringMu.Lock()
		delete(c.keyringPending, id)
		c.keyringMu.Unlock()
	}()
	msg, err := json.Marshal(keyringRequest{ID: id, From: self, Op: op, Key: key})
	if err != nil {
		return nil, fmt.Errorf("encode keyring request: %w", err)
	}
	msg = append([]byte{keyringMsgRequest}, msg...)

	results := map[string]KeyringResult{}
	sendErrs := make(chan KeyringResult, len(targets))
	for _, n := range targets {
		go func() {
			if err := c.ml.SendReliable(n, msg); err != nil {
				sendErrs <- KeyringResult{Node: n.Name, Error: fmt.Sprintf("send the keyring request: %v", err)}
			}
		}()
	}
	expected := map[string]bool{}
	for _, n := range targets {
		expected[n.Name] = true
	}
	for len(results) < len(targets) {
		select {
		case r := <-replies:
			if expected[r.Node] {
				results[r.Node] = r
			}
		case r := <-sendErrs:
			results[r.Node] = r
		case <-ctx.Done():
			for name := range expected {
				if _, ok := results[name]; !ok {
					results[name] = KeyringResult{Node: name, Error: fmt.Sprintf("no answer: %v", ctx.Err())}
				}
			}
		}
	}
	// This node last: removing a key here first could make the other
	// members' answers, still encrypted with it, unreadable.
	results[self] = c.applyKeyring(op, key)
	out := make([]KeyringResult, 0, len(results))
	for _, r := range results {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b KeyringResult) int {
		switch {
		case a.Node < b.Node:
			return -1
		case a.Node > b.Node:
			return 1
		}
		return 0
	})
	c.log.Info("gossip keyring operation", "op", string(op), "members", len(out), "failed", countFailed(out))
	return out, nil
}

// aliveNodes returns copies of the alive members but except, from the
// copies recorded from memberlist's events: the nodes memberlist's own
// Members() returns point into state it keeps changing.
func (c *Cluster) aliveNodes(except string) []*memberlist.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*memberlist.Node
	for name, n := range c.nodes {
		if name != except && c.state[name] == StatusAlive {
			cp := *n
			out = append(out, &cp)
		}
	}
	return out
}

func countFailed(rs []KeyringResult) int {
	n := 0
	for _, r := range rs {
		if r.Error != "" {
			n++
		}
	}
	return n
}

// applyKeyring applies op to this node's keyring and file. It never logs
// the key.
func (c *Cluster) applyKeyring(op KeyringOp, key []byte) KeyringResult {
	res := KeyringResult{Node: c.cfg.NodeName}
	if !c.GossipEncrypted() {
		res.Error = ErrGossipNotEncrypted.Error()
		return res
	}
	c.keyringMu.Lock()
	defer c.keyringMu.Unlock()
	ring := c.keyring.ring
	var err error
	switch op {
	case KeyringList:
	case KeyringInstall:
		err = ring.AddKey(key)
	case KeyringUse:
		if err = ring.UseKey(key); err != nil {
			err = ErrKeyNotInstalled
		}
	case KeyringRemove:
		if bytes.Equal(ring.GetPrimaryKey(), key) {
			err = ErrRemovePrimaryKey
		} else {
			err = ring.RemoveKey(key)
		}
	default:
		err = fmt.Errorf("keyring operation %q: want list, install, use or remove", op)
	}
	if err == nil && op != KeyringList {
		if err = c.keyring.save(); err != nil {
			err = fmt.Errorf("the keyring changed in memory but not on disk, a restart would undo it: %w", err)
		}
	}
	keys := slices.Clone(ring.GetKeys())
	res.Keys = encodeKeys(keys)
	if len(keys) > 0 {
		res.PrimaryKey = res.Keys[0]
	}
	if err != nil {
		res.Error = err.Error()
		if op != KeyringList {
			c.log.Warn("gossip keyring operation refused", "op", string(op), "err", err)
		}
	}
	return res
}

// keyringMessages answers keyring requests from other members and hands
// their replies to the waiting Keyring call, one message at a time.
func (c *Cluster) keyringMessages() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case msg := <-c.keyringInbox:
			c.handleKeyringMessage(msg)
		}
	}
}

func (c *Cluster) handleKeyringMessage(msg []byte) {
	switch msg[0] {
	case keyringMsgRequest:
		var req keyringRequest
		if err := json.Unmarshal(msg[1:], &req); err != nil {
			c.log.Warn("drop a malformed keyring request from gossip", "err", err)
			return
		}
		reply := keyringReply{ID: req.ID, Result: c.applyKeyring(req.Op, req.Key)}
		b, err := json.Marshal(reply)
		if err != nil {
			c.log.Warn("encode keyring reply", "err", err)
			return
		}
		var to *memberlist.Node
		for _, n := range c.aliveNodes("") {
			if n.Name == req.From {
				to = n
				break
			}
		}
		if to == nil {
			c.log.Warn("cannot answer a keyring request: its sender is not a live member", "from", req.From)
			return
		}
		if err := c.ml.SendReliable(to, append([]byte{keyringMsgReply}, b...)); err != nil {
			c.log.Warn("answer a keyring request", "to", req.From, "err", err)
		}
	case keyringMsgReply:
		var reply keyringReply
		if err := json.Unmarshal(msg[1:], &reply); err != nil {
			c.log.Warn("drop a malformed keyring reply from gossip", "err", err)
			return
		}
		c.keyringMu.Lock()
		ch := c.keyringPending[reply.ID]
		c.keyringMu.Unlock()
		if ch == nil {
			return // the call gave up waiting
		}
		select {
		case ch <- reply.Result:
		default: // more replies than members asked: a duplicate
		}
	}
}

// keyringInboxSize bounds the keyring messages waiting to be handled;
// gossip drops (and logs) what does not fit rather than block.
const keyringInboxSize = 256
