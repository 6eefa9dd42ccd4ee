package catalog

import (
	"encoding/json"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
)

// allCommandTypes is every command the FSM applies; the table test below
// fails when a type is added without deciding whether clients may send it.
var allCommandTypes = []CommandType{
	CmdRegister, CmdDeregister, CmdCheckStatus, CmdConfigSet, CmdConfigDelete, CmdRegisterBatch,
	CmdSyncNode, CmdDeregisterBatch, CmdPeeringWrite, CmdPeeringSecrets, CmdPeeringDelete,
	CmdTrustBundle, CmdMetaSet, CmdCARoots, CmdVirtualIPs,
}

func TestClientCommands(t *testing.T) {
	caller := identity.Agent{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"), Role: identity.RoleClient, Datacenter: "dc1", Node: "c1"}
	serf := &state.HealthCheck{CheckID: "SerfHealth", Status: state.HealthPassing}
	own := &state.Node{Node: "c1", Address: "127.0.0.1"}
	tests := []struct {
		name      string
		cmd       *Command
		forwarded bool
		allowed   bool
	}{
		{"register own service", &Command{Type: CmdRegister, Register: reg("c1", "web")}, false, true},
		{"register own check", &Command{Type: CmdRegister, Register: &state.RegisterRequest{Node: own, Checks: []*state.HealthCheck{{CheckID: "c"}}}}, false, true},
		{"register another node", &Command{Type: CmdRegister, Register: reg("s1", "web")}, false, false},
		{"register a node differing in case", &Command{Type: CmdRegister, Register: reg("C1", "web")}, false, false},
		{"register without a node", &Command{Type: CmdRegister, Register: &state.RegisterRequest{}}, false, false},
		{"register without a request", &Command{Type: CmdRegister}, false, false},
		{"register an imported service", &Command{Type: CmdRegister, Register: &state.RegisterRequest{Node: own, PeerName: "p"}}, false, false},
		{"register the leader's serfHealth", &Command{Type: CmdRegister, Register: &state.RegisterRequest{Node: own, Checks: []*state.HealthCheck{serf}}}, false, false},
		{"register own, forwarded", &Command{Type: CmdRegister, Register: reg("c1", "web")}, true, false},
		{"deregister own node", &Command{Type: CmdDeregister, Deregister: &state.DeregisterRequest{Node: "c1"}}, false, true},
		{"deregister own service", &Command{Type: CmdDeregister, Deregister: &state.DeregisterRequest{Node: "c1", ServiceID: "web"}}, false, true},
		{"deregister another node", &Command{Type: CmdDeregister, Deregister: &state.DeregisterRequest{Node: "s1"}}, false, false},
		{"deregister an imported node", &Command{Type: CmdDeregister, Deregister: &state.DeregisterRequest{Node: "c1", PeerName: "p"}}, false, false},
		{"deregister the leader's serfHealth", &Command{Type: CmdDeregister, Deregister: &state.DeregisterRequest{Node: "c1", CheckID: "serfHealth"}}, false, false},
		{"deregister without a request", &Command{Type: CmdDeregister}, false, false},
		{"sync own node", &Command{Type: CmdSyncNode, SyncNode: &state.SyncNodeRequest{Node: own, Services: []*state.Service{{ID: "web", Service: "web"}}}}, false, true},
		{"sync another node", &Command{Type: CmdSyncNode, SyncNode: &state.SyncNodeRequest{Node: &state.Node{Node: "s1"}}}, false, false},
		{"sync with serfHealth", &Command{Type: CmdSyncNode, SyncNode: &state.SyncNodeRequest{Node: own, Checks: []*state.HealthCheck{serf}}}, false, false},
		{"sync without a node", &Command{Type: CmdSyncNode, SyncNode: &state.SyncNodeRequest{}}, false, false},
		{"config set", &Command{Type: CmdConfigSet, ConfigEntry: &ConfigEntryRequest{Kind: "service-defaults", Name: "web", Entry: json.RawMessage(`{}`)}}, false, true},
		{"config delete", &Command{Type: CmdConfigDelete, ConfigEntry: &ConfigEntryRequest{Kind: "service-defaults", Name: "web"}}, false, true},
		{"unknown type", &Command{Type: "from-the-future"}, false, false},
	}
	// Every other type is for servers only, whatever it carries.
	for _, typ := range allCommandTypes {
		switch typ {
		case CmdRegister, CmdDeregister, CmdSyncNode, CmdConfigSet, CmdConfigDelete:
			continue
		}
		tests = append(tests, struct {
			name      string
			cmd       *Command
			forwarded bool
			allowed   bool
		}{"server-only " + string(typ), &Command{Type: typ, Registers: []*state.RegisterRequest{reg("c1", "web")}}, false, false})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := tt.cmd.Encode()
			if err != nil {
				t.Fatal(err)
			}
			_, out, err := authorizeClient(data, tt.forwarded, caller)
			if got := err == nil; got != tt.allowed {
				t.Fatalf("got allowed %v (%v), want %v", got, err, tt.allowed)
			}
			if tt.allowed {
				back, err := DecodeCommand(out)
				if err != nil || back.Type != tt.cmd.Type {
					t.Fatalf("got %v (%v) to commit, want the %s command", back, err, tt.cmd.Type)
				}
			}
		})
	}
	if _, _, err := authorizeClient([]byte("not json"), false, caller); err == nil {
		t.Fatal("a command that does not decode was allowed")
	}
	for typ := range clientCommands {
		found := false
		for _, known := range allCommandTypes {
			found = found || known == typ
		}
		if !found {
			t.Errorf("clientCommands allows %q, which allCommandTypes does not list", typ)
		}
	}
}

// What is checked is what is committed: a second, differently cased key
// that encoding/json would also match cannot smuggle another node past
// the check, because the checked command is re-encoded.
func TestClientCommandsCommitWhatWasChecked(t *testing.T) {
	caller := identity.Agent{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"), Role: identity.RoleClient, Datacenter: "dc1", Node: "c1"}
	data := []byte(`{"Type":"register","Register":{"Node":{"Node":"c1"}},"register":{"Node":{"Node":"s1"}}}`)
	_, out, err := authorizeClient(data, false, caller)
	if err != nil {
		// Refusing is as good as committing what was checked.
		return
	}
	cmd, err := DecodeCommand(out)
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Register.Node.Node != "c1" {
		t.Fatalf("got node %q committed, want c1", cmd.Register.Node.Node)
	}
}
