package pbpeerstream

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Each type URL is the Any type URL of the payload message it names.
func TestTypeURLs(t *testing.T) {
	for url := range typeURLs {
		t.Run(url, func(t *testing.T) {
			mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
			if err != nil {
				t.Fatalf("FindMessageByURL: %v", err)
			}
			m, ok := NewResource(url)
			if !ok {
				t.Fatal("NewResource: unknown")
			}
			if got, want := m.ProtoReflect().Descriptor().FullName(), mt.Descriptor().FullName(); got != want {
				t.Fatalf("NewResource: got %s, want %s", got, want)
			}
		})
	}
	if KnownTypeURL("type.googleapis.com/hashicorp.consul.internal.peerstream.ExportedService") {
		t.Fatal("a Consul type URL is known")
	}
	if _, ok := NewResource("type.googleapis.com/peerd.peerstream.v1.Heartbeat"); ok {
		t.Fatal("NewResource accepted a message that is not a resource")
	}
}

func TestInstanceID(t *testing.T) {
	i := &ServiceInstance{NodeName: "node-1", ServiceId: "web-1"}
	if got, want := i.InstanceID(), "node-1/web-1"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// The chunking rule (the resource is the concatenation of the chunks' bytes)
// holds whether the exporter cuts the bytes anywhere or marshals a slice of
// the instances per chunk.
func TestChunkConcatenation(t *testing.T) {
	full := &ExportedService{Name: "web", Full: true}
	for _, n := range []string{"a", "b", "c", "d"} {
		full.Instances = append(full.Instances, &ServiceInstance{NodeName: n, ServiceId: "web", Port: 8080, Meta: map[string]string{"k": n}})
	}
	whole, err := proto.MarshalOptions{Deterministic: true}.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	// Byte cut.
	var got ExportedService
	if err := proto.Unmarshal(append(append([]byte(nil), whole[:len(whole)/3]...), whole[len(whole)/3:]...), &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, full) {
		t.Fatalf("byte chunks: got %v, want %v", &got, full)
	}
	// One message per chunk.
	first, _ := proto.Marshal(&ExportedService{Name: "web", Full: true, Instances: full.Instances[:2]})
	second, _ := proto.Marshal(&ExportedService{Name: "web", Full: true, Instances: full.Instances[2:]})
	got.Reset()
	if err := proto.Unmarshal(append(first, second...), &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, full) {
		t.Fatalf("message chunks: got %v, want %v", &got, full)
	}
}

func TestValidate(t *testing.T) {
	open := func(o *Open) *ReplicationMessage {
		return &ReplicationMessage{Payload: &ReplicationMessage_Open{Open: o}}
	}
	req := func(r *Request) *ReplicationMessage {
		return &ReplicationMessage{Payload: &ReplicationMessage_Request{Request: r}}
	}
	resp := func(f func(r *Response)) *ReplicationMessage {
		r := &Response{
			ResourceUrl: TypeURLExportedService,
			ResourceId:  "web",
			Nonce:       "00000001",
			Version:     7,
			Operation:   Operation_OPERATION_UPSERT,
			Resource:    []byte{0x0a, 0x03, 'w', 'e', 'b'},
		}
		if f != nil {
			f(r)
		}
		return &ReplicationMessage{Payload: &ReplicationMessage_Response{Response: r}}
	}
	nack := &Status{Code: 3, Message: "bad"}

	tests := []struct {
		name    string
		msg     *ReplicationMessage
		wantErr string // empty: valid
	}{
		{"nil message", nil, "nil"},
		{"no payload", &ReplicationMessage{}, "no payload set"},
		{"open", open(&Open{PeerId: "p", StreamSecretId: "s", Remote: &Remote{Datacenter: "dc1"}}), ""},
		{"open nil", open(nil), "open: set but nil"},
		{"open without peer", open(&Open{StreamSecretId: "s"}), "peer_id is empty"},
		{"open without secret", open(&Open{PeerId: "p"}), "stream_secret_id is empty"},
		{"heartbeat", &ReplicationMessage{Payload: &ReplicationMessage_Heartbeat{Heartbeat: &Heartbeat{}}}, ""},
		{"heartbeat nil", &ReplicationMessage{Payload: &ReplicationMessage_Heartbeat{}}, "heartbeat is set but nil"},
		{"terminated", &ReplicationMessage{Payload: &ReplicationMessage_Terminated{Terminated: &Terminated{}}}, ""},
		{"terminated nil", &ReplicationMessage{Payload: &ReplicationMessage_Terminated{}}, "terminated is set but nil"},

		{"subscription", req(&Request{ResourceUrl: TypeURLTrustBundle}), ""},
		{"subscription with versions", req(&Request{ResourceUrl: TypeURLExportedService, InitialVersions: map[string]uint64{"web": 3, "api": 9}}), ""},
		{"ack", req(&Request{ResourceUrl: TypeURLServerAddresses, ResponseNonce: "0000000a"}), ""},
		{"nack", req(&Request{ResourceUrl: TypeURLExportedServiceList, ResponseNonce: "0000000a", Error: nack}), ""},
		{"request nil", req(nil), "request: set but nil"},
		{"request without url", req(&Request{}), "resource_url is empty"},
		{"request unknown url", req(&Request{ResourceUrl: "type.googleapis.com/peerd.peerstream.v1.KV"}), `unknown resource_url "type.googleapis.com/peerd.peerstream.v1.KV"`},
		{"request Consul url", req(&Request{ResourceUrl: "type.googleapis.com/hashicorp.consul.internal.peering.PeeringTrustBundle"}), "the peer is not peerd"},
		{"nack without nonce", req(&Request{ResourceUrl: TypeURLTrustBundle, Error: nack}), "needs the response_nonce"},
		{"nack with code OK", req(&Request{ResourceUrl: TypeURLTrustBundle, ResponseNonce: "1", Error: &Status{}}), "code 0 (OK)"},
		{"versions in an ack", req(&Request{ResourceUrl: TypeURLExportedService, ResponseNonce: "1", InitialVersions: map[string]uint64{"web": 1}}), "only allowed in a subscription"},
		{"subscription version 0", req(&Request{ResourceUrl: TypeURLExportedService, InitialVersions: map[string]uint64{"web": 0}}), `initial_versions["web"] is 0`},
		{"empty resource ID in versions", req(&Request{ResourceUrl: TypeURLExportedService, InitialVersions: map[string]uint64{"": 2}}), "empty resource ID"},

		{"upsert", resp(nil), ""},
		{"upsert of an empty payload", resp(func(r *Response) { r.Resource = nil }), ""},
		{"delete", resp(func(r *Response) { r.Operation, r.Resource = Operation_OPERATION_DELETE, nil }), ""},
		{"chunk", resp(func(r *Response) { r.ChunkIndex, r.ChunkCount = 2, 3 }), ""},
		{"full sync", resp(func(r *Response) { r.FullSync = true }), ""},
		{"last of a full sync", resp(func(r *Response) { r.FullSync, r.SyncEnd = true, true }), ""},
		{"last chunk ends the sync", resp(func(r *Response) { r.FullSync, r.SyncEnd, r.ChunkIndex, r.ChunkCount = true, true, 1, 2 }), ""},
		{"sync_end marker", resp(func(r *Response) {
			*r = Response{ResourceUrl: TypeURLExportedService, Nonce: "2", FullSync: true, SyncEnd: true}
		}), ""},
		{"response nil", &ReplicationMessage{Payload: &ReplicationMessage_Response{}}, "response: set but nil"},
		{"response without url", resp(func(r *Response) { r.ResourceUrl = "" }), "resource_url is empty"},
		{"response unknown url", resp(func(r *Response) { r.ResourceUrl = "x" }), `unknown resource_url "x"`},
		{"response without nonce", resp(func(r *Response) { r.Nonce = "" }), "nonce is empty"},
		{"response without resource_id", resp(func(r *Response) { r.ResourceId = "" }), "resource_id is empty"},
		{"marker with a payload", resp(func(r *Response) { r.ResourceId, r.FullSync, r.SyncEnd = "", true, true }), "must carry no operation"},
		{"sync_end without full_sync", resp(func(r *Response) { r.SyncEnd = true }), "sync_end is set without full_sync"},
		{"response version 0", resp(func(r *Response) { r.Version = 0 }), "version is 0"},
		{"chunk index without count", resp(func(r *Response) { r.ChunkIndex = 1 }), "chunk_index 1 without chunk_count"},
		{"chunk index past count", resp(func(r *Response) { r.ChunkIndex, r.ChunkCount = 3, 3 }), "chunk_index 3 is not below chunk_count 3"},
		{"sync_end on a middle chunk", resp(func(r *Response) { r.FullSync, r.SyncEnd, r.ChunkIndex, r.ChunkCount = true, true, 0, 2 }), "sync_end on chunk 0 of 2"},
		{"no operation", resp(func(r *Response) { r.Operation = Operation_OPERATION_UNSPECIFIED }), "operation is unspecified"},
		{"unknown operation", resp(func(r *Response) { r.Operation = 9 }), "unknown operation 9"},
		{"delete with payload", resp(func(r *Response) { r.Operation = Operation_OPERATION_DELETE }), "DELETE carries a resource"},
		{"delete in chunks", resp(func(r *Response) { r.Operation, r.Resource, r.ChunkCount = Operation_OPERATION_DELETE, nil, 2 }), "DELETE is chunked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.msg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("got nil, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("got %q, want it to contain %q", err, tt.wantErr)
			}
			if tt.msg == nil || tt.wantErr != "" {
				return
			}
			// A valid message stays valid on the wire.
			b, err := proto.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			var again ReplicationMessage
			if err := proto.Unmarshal(b, &again); err != nil {
				t.Fatal(err)
			}
			if err := again.Validate(); err != nil {
				t.Fatalf("after a wire round trip: %v", err)
			}
		})
	}
}

// FuzzReplicationMessage feeds arbitrary bytes to the receiver's first two
// steps, Unmarshal and Validate: neither may panic, and a message that
// validates still validates after a wire round trip.
func FuzzReplicationMessage(f *testing.F) {
	for _, m := range []*ReplicationMessage{
		{Payload: &ReplicationMessage_Open{Open: &Open{PeerId: "p", StreamSecretId: "s"}}},
		{Payload: &ReplicationMessage_Request{Request: &Request{ResourceUrl: TypeURLExportedService, InitialVersions: map[string]uint64{"web": 3}}}},
		{Payload: &ReplicationMessage_Response{Response: &Response{ResourceUrl: TypeURLTrustBundle, ResourceId: ResourceIDTrustBundle, Nonce: "1", Version: 1, Operation: Operation_OPERATION_UPSERT, ChunkCount: 2}}},
		{Payload: &ReplicationMessage_Heartbeat{Heartbeat: &Heartbeat{}}},
		{Payload: &ReplicationMessage_SecretRotation{SecretRotation: &SecretRotation{StreamSecret: "s2"}}},
		{Payload: &ReplicationMessage_Open{Open: &Open{PeerId: "p", StreamSecretId: "s", SecretRotation: true}}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m ReplicationMessage
		if err := proto.Unmarshal(b, &m); err != nil {
			return
		}
		if m.Validate() != nil {
			return
		}
		b2, err := proto.Marshal(&m)
		if err != nil {
			t.Fatalf("marshal of a valid message: %v", err)
		}
		var again ReplicationMessage
		if err := proto.Unmarshal(b2, &again); err != nil {
			t.Fatal(err)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("valid message invalid after a round trip: %v", err)
		}
	})
}
