package catalog

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/peerd/peerd/catalog/state"
)

// commandSeeds is one command of every type, as the FSM applies them.
func commandSeeds() []*Command {
	return []*Command{
		{Type: CmdRegister, Register: reg("n1", "web", &state.HealthCheck{CheckID: "c1", ServiceID: "web", Status: state.HealthPassing})},
		{Type: CmdRegisterBatch, Registers: []*state.RegisterRequest{imported("p", "n2", "api")}},
		{Type: CmdDeregister, Deregister: &state.DeregisterRequest{Node: "n1", ServiceID: "web"}},
		{Type: CmdDeregisterBatch, Deregisters: []*state.DeregisterRequest{{PeerName: "p", Node: "n2"}}},
		{Type: CmdSyncNode, SyncNode: &state.SyncNodeRequest{Node: &state.Node{Node: "n1"}, Services: []*state.Service{{ID: "a", Service: "a"}}}},
		{Type: CmdCheckStatus, CheckStatus: &CheckStatusRequest{Node: "n1", CheckID: "c1", Status: state.HealthCritical}},
		{Type: CmdConfigSet, ConfigEntry: &ConfigEntryRequest{Kind: "service-defaults", Name: "web", Entry: json.RawMessage(`{"Kind":"service-defaults","Name":"web","Protocol":"http"}`)}},
		{Type: CmdConfigSet, ConfigEntry: &ConfigEntryRequest{Kind: "service-intentions", Name: "web", Entry: json.RawMessage(`{"Kind":"service-intentions","Name":"web","Sources":[{"Name":"*","Action":"allow"}]}`), CAS: true}},
		{Type: CmdConfigDelete, ConfigEntry: &ConfigEntryRequest{Kind: "service-defaults", Name: "web"}},
		{Type: CmdPeeringWrite, Peering: &state.PeeringWriteRequest{Peering: &state.Peering{Name: "p", ID: "8f5d0c8e-0000-4000-8000-000000000001"}}},
		{Type: CmdPeeringSecrets, PeeringSecrets: &state.PeeringSecretsRequest{Op: "establish", PeeringID: "8f5d0c8e-0000-4000-8000-000000000001", New: "s"}},
		{Type: CmdPeeringSecrets, PeeringSecrets: &state.PeeringSecretsRequest{Op: state.SecretsRotate, PeeringID: "8f5d0c8e-0000-4000-8000-000000000001", New: "s2"}},
		{Type: CmdPeeringSecrets, PeeringSecrets: &state.PeeringSecretsRequest{Op: state.SecretsStore, PeeringID: "8f5d0c8e-0000-4000-8000-000000000001", New: "s3"}},
		{Type: CmdPeeringSecrets, PeeringSecrets: &state.PeeringSecretsRequest{Op: state.SecretsExchange, PeeringID: "8f5d0c8e-0000-4000-8000-000000000001", Presented: "e", New: "s",
			Identity: &state.StreamIdentity{TrustDomain: "d.peerd", RootPEMs: []string{"x"}}}},
		{Type: CmdPeeringDelete, PeeringDelete: &PeeringDeleteRequest{Name: "p"}},
		{Type: CmdTrustBundle, TrustBundle: &state.PeeringTrustBundle{PeerName: "p", TrustDomain: "example.org"}},
		{Type: CmdMetaSet, MetaSet: &state.MetaSetRequest{Key: "k", Value: "v", OnlyIfAbsent: true}},
		{Type: CmdCARoots, CARoots: &state.CARootsRequest{Roots: []*state.CARoot{{ID: "r", Active: true}}}},
		{Type: CmdVirtualIPs, VirtualIPs: &state.VirtualIPsRequest{}},
		{Type: CmdACL, ACL: &state.ACLRequest{Policy: &state.ACLPolicy{ID: "8f5d0c8e-0000-4000-8000-000000000003", Name: "p", Rules: `service "web" { policy = "read" }`}}},
		{Type: CmdACL, ACL: &state.ACLRequest{Token: &state.ACLTokenRequest{Create: true, Token: &state.ACLToken{
			AccessorID: "8f5d0c8e-0000-4000-8000-000000000004", SecretID: "8f5d0c8e-0000-4000-8000-000000000005",
			Policies: []state.ACLLink{{Name: "p"}}, ServiceIdentities: []*state.ACLServiceIdentity{{ServiceName: "web"}}}}}},
		{Type: CmdACL, ACL: &state.ACLRequest{Role: &state.ACLRole{ID: "8f5d0c8e-0000-4000-8000-000000000006", Name: "r", Policies: []state.ACLLink{{ID: "8f5d0c8e-0000-4000-8000-000000000003"}}}}},
		{Type: CmdACL, ACL: &state.ACLRequest{Bootstrap: &state.ACLBootstrapRequest{Token: &state.ACLToken{
			AccessorID: "8f5d0c8e-0000-4000-8000-000000000007", SecretID: "8f5d0c8e-0000-4000-8000-000000000008"}}}},
		{Type: CmdACL, ACL: &state.ACLRequest{DeletePolicy: "8f5d0c8e-0000-4000-8000-000000000003"}},
		{Type: CmdACL, ACL: &state.ACLRequest{DeleteToken: "00000000-0000-0000-0000-000000000002"}},
	}
}

// FuzzApplyCommand feeds arbitrary log entries to the FSM on a fresh store:
// whatever a raft log holds (a bug, a newer server, a forged entry), Apply
// must return an *ApplyResult and never panic.
func FuzzApplyCommand(f *testing.F) {
	seeds := commandSeeds()
	for _, c := range seeds {
		b, err := c.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"Type":"register"}`))
	f.Add([]byte(`{"Type":"config-set","ConfigEntry":{"Kind":"nope"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		store, err := state.NewStore()
		if err != nil {
			t.Fatal(err)
		}
		fsm := &fsm{store: store}
		// The same entry twice: the second meets the state the first left.
		for i := uint64(1); i <= 2; i++ {
			if _, ok := fsm.Apply(&raft.Log{Index: i, Data: data}).(*ApplyResult); !ok {
				t.Fatal("Apply did not return an *ApplyResult")
			}
		}
	})
}

// FuzzMirrorApply feeds a client node's mirror decoder what a server (or
// anything that reached it) could send: a gzip of records. It must never
// panic, and a state it refuses must leave the view as it was.
func FuzzMirrorApply(f *testing.F) {
	src := newTestStore(f)
	if err := src.Register(5, reg("n1", "web")); err != nil {
		f.Fatal(err)
	}
	// The ACL tables are mirrored too (tokens without their secrets).
	if err := src.ACLApply(6, &state.ACLRequest{Policy: &state.ACLPolicy{ID: "8f5d0c8e-0000-4000-8000-000000000010", Name: "p"}}); err != nil {
		f.Fatal(err)
	}
	if err := src.ACLApply(7, &state.ACLRequest{Token: &state.ACLTokenRequest{Create: true, Token: &state.ACLToken{
		AccessorID: "8f5d0c8e-0000-4000-8000-000000000011", SecretID: "8f5d0c8e-0000-4000-8000-000000000012",
		Policies: []state.ACLLink{{Name: "p"}}}}}); err != nil {
		f.Fatal(err)
	}
	var good bytes.Buffer
	zw := gzip.NewWriter(&good)
	if _, err := src.WriteMirror(zw, nil); err != nil {
		f.Fatal(err)
	}
	_ = zw.Close()
	f.Add(good.Bytes())
	f.Add([]byte{})
	f.Add([]byte("\x1f\x8b\x08\x00garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := newMirrorView()
		if err != nil {
			t.Fatal(err)
		}
		if err := v.apply(good.Bytes()); err != nil {
			t.Fatal(err)
		}
		before := v.store.LastIndex()
		if err := v.apply(data); err != nil && v.store.LastIndex() != before {
			t.Fatalf("a refused state changed the view: index %d, was %d", v.store.LastIndex(), before)
		}
	})
}
