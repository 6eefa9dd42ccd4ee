package catalog

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/seal"
)

// snapshotWriter writes snapshot files as SaveSnapshot does: a gzip stream
// of a header line and then the body (the sealed records). It reuses one
// compressor: allocating one is most of the cost of a fuzz execution.
type snapshotWriter struct {
	zw *gzip.Writer
}

func (sw *snapshotWriter) file(t testing.TB, h SnapshotHeader, body []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if sw.zw == nil {
		sw.zw = gzip.NewWriter(&buf)
	} else {
		sw.zw.Reset(&buf)
	}
	if err := json.NewEncoder(sw.zw).Encode(&h); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.zw.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := sw.zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sealRecords seals plaintext records as a snapshot's body.
func sealRecords(t testing.TB, key *seal.Key, records []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := writeSealed(&buf, key, func(w io.Writer) error { _, err := w.Write(records); return err }); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// restoreSeeds are snapshot records, a table or two each, and as short as a
// record can be: the fuzzer minimizes every input that finds new code, in
// a time that grows with the square of the input's length, during which
// the worker runs no new input.
var restoreSeeds = []string{
	`{"Node":{"Node":{"Node":"n","Address":"10.0.0.1"}}}`,
	`{"Index":{"Table":"nodes","Index":3}}`,
	`{"Service":{"Node":"n","Service":{"ID":"w","Service":"w"}}}`,
	`{"Check":{"Node":"n","Check":{"CheckID":"c","Status":"passing"}}}`,
	`{"Config":{"Kind":"service-defaults","Entry":{"Name":"w"}}}`,
	`{"Config":{"Kind":"service-intentions","Entry":{"Name":"w","Sources":[{"Name":"*","Action":"allow"}]}}}`,
	`{"Peering":{"ID":"8f5d0c8e-0000-4000-8000-000000000001","Name":"p"}}`,
	`{"Secrets":{"PeeringID":"p","ActiveStreamSecret":"s"}}`,
	`{"TrustBundle":{"PeerName":"p","TrustDomain":"t"}}`,
	`{"CARoot":{"ID":"r","Active":true}}`,
	`{"Meta":{"Key":"k","Value":"v"}}`,
	`{"VirtualIP":{"Peer":"p","Service":"w","IPv4":"240.0.0.1"}}`,
	`{"JoinToken":{"ID":"j","Role":"client"}}`,
}

// restoreFixture is what both restore fuzz targets share: the cluster's
// secrets key, a snapshot header, a snapshot writer and the writes that
// follow a restore (encoded once).
type restoreFixture struct {
	key    *seal.Key
	h      SnapshotHeader
	sw     *snapshotWriter
	writes [][]byte
}

func newRestoreFixture(f *testing.F) *restoreFixture {
	key, err := seal.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	rf := &restoreFixture{key: key, h: SnapshotHeader{Format: snapshotFormat, Datacenter: "dc1", Index: 3}, sw: &snapshotWriter{}}
	for _, c := range commandSeeds() {
		b, err := c.Encode()
		if err != nil {
			f.Fatal(err)
		}
		rf.writes = append(rf.writes, b)
	}
	for _, rec := range restoreSeeds {
		if err := newTestStore(f).Restore(strings.NewReader(rec)); err != nil {
			f.Fatalf("seed %s: %v", rec, err)
		}
	}
	return rf
}

// FuzzRestoreSnapshot feeds the snapshot restore path (readSnapshot) what
// an operator's upload (PUT /v1/snapshot, `peerctl snapshot restore`)
// could hold: the gzip stream, the header line, the seal and the records.
// It must never panic, and a state it accepts must work (checkRestored).
// FuzzRestoreRecords reaches further into the records.
func FuzzRestoreSnapshot(f *testing.F) {
	rf := newRestoreFixture(f)
	f.Add(rf.sw.file(f, rf.h, sealRecords(f, rf.key, []byte(restoreSeeds[0]))))
	f.Add(rf.sw.file(f, rf.h, []byte(restoreSeeds[0]+"\n"+restoreSeeds[2])))
	f.Add(rf.sw.file(f, SnapshotHeader{Format: "peerd-snapshot/2"}, nil))
	f.Add([]byte("\x1f\x8b\x08\x00garbage"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, file []byte) {
		if _, body, err := readSnapshot(bytes.NewReader(file), rf.key); err == nil {
			checkRestored(t, rf.key, body, rf.writes)
		}
	})
}

// FuzzRestoreRecords feeds readSnapshot records in an otherwise
// well-formed upload (unsealed, which a restore accepts too), so that the
// fuzzer works on the records rather than on the gzip stream around them.
// It must never panic. A state it accepts must install on every server as
// raft does (fsm.Restore), answer every read, save and restore again, be
// mirrored to client nodes, and take the writes that follow it.
func FuzzRestoreRecords(f *testing.F) {
	rf := newRestoreFixture(f)
	for _, rec := range restoreSeeds {
		f.Add([]byte(rec))
	}
	f.Add([]byte(`{"Node":{}}`))
	f.Fuzz(func(t *testing.T, records []byte) {
		_, body, err := readSnapshot(bytes.NewReader(rf.sw.file(t, rf.h, records)), rf.key)
		if err != nil {
			return
		}
		checkRestored(t, rf.key, body, rf.writes)
	})
}

// checkRestored installs body, the records readSnapshot accepted, as raft
// does on every server, and uses the state; writes are encoded commands to
// apply to it.
func checkRestored(t *testing.T, key *seal.Key, body []byte, writes [][]byte) {
	t.Helper()
	f := &fsm{store: newTestStore(t), secrets: key}
	if err := f.Restore(io.NopCloser(bytes.NewReader(body))); err != nil {
		t.Fatalf("readSnapshot accepted records fsm.Restore refuses: %v", err)
	}
	st := f.store
	readAll(t, st)

	// The next raft snapshot of this state restores, as does a client
	// node's mirror of it.
	var again bytes.Buffer
	if err := st.Snapshot().Write(&again); err != nil {
		t.Fatalf("the restored state does not save: %v", err)
	}
	if err := newTestStore(t).Restore(bytes.NewReader(again.Bytes())); err != nil {
		t.Fatalf("the restored state saves a snapshot that does not restore: %v", err)
	}
	var mirror bytes.Buffer
	if _, err := st.WriteMirror(&mirror, nil); err != nil {
		t.Fatalf("the restored state does not mirror: %v", err)
	}
	if err := newTestStore(t).RestoreMirror(bytes.NewReader(mirror.Bytes())); err != nil {
		t.Fatalf("client nodes refuse the restored state's mirror: %v", err)
	}

	// Writes that follow it: every command type, at the next indexes.
	idx := st.LastIndex()
	for _, b := range writes {
		idx++
		if _, ok := f.Apply(&raft.Log{Index: idx, Data: b}).(*ApplyResult); !ok {
			t.Fatal("Apply did not return an *ApplyResult")
		}
	}
	readAll(t, st)
}

// readAll runs every read of the state store over all it holds; an error
// is fine, a panic is not.
func readAll(t *testing.T, st *state.Store) {
	t.Helper()
	_ = st.RowCounts()
	_, _, _ = st.CARoots(nil)
	_, _, _ = st.Exports(nil)
	_, _, _ = st.ExportedServices(nil)
	_, _, _ = st.ImportedServiceNames(nil)
	_, _, _ = st.JoinTokens(nil)
	_, vips, _ := st.VirtualIPs(nil)
	for _, v := range vips {
		for _, ip := range []string{v.IPv4, v.IPv6} {
			if a, err := netip.ParseAddr(ip); err == nil {
				_, _, _ = st.VirtualIPByAddr(nil, a)
			}
		}
		_, _, _ = st.VirtualIP(nil, v.Peer, v.Service)
	}
	_, _, _ = st.VirtualIPByAddr(nil, netip.MustParseAddr("240.0.0.1"))
	for _, kind := range configentry.Kinds() {
		_, entries, _ := st.ConfigEntries(nil, kind)
		for _, e := range entries {
			_, _, _ = st.ConfigEntry(nil, kind, e.GetName())
		}
	}
	peers := []string{""}
	_, peerings, _ := st.Peerings(nil)
	for _, p := range peerings {
		peers = append(peers, p.Name)
		_, _, _ = st.Peering(nil, p.Name)
		_, _, _ = st.PeeringByID(nil, p.ID)
		_, _ = st.PeeringSecrets(p.ID)
		_, _, _ = st.TrustBundle(nil, p.Name)
		_, _ = st.ImportedNodes(p.Name, 10)
	}
	for _, peer := range peers {
		_, nodes, _ := st.Nodes(nil, peer)
		for _, n := range nodes {
			_, _, _ = st.Node(nil, peer, n.Node)
			_, _, _ = st.NodeServices(nil, peer, n.Node)
			_, _, _ = st.NodeChecks(nil, peer, n.Node)
		}
		_, services, _ := st.Services(nil, peer)
		for name := range services {
			_, _, _ = st.ServiceNodes(nil, peer, name)
			_, _, _ = st.CheckServiceNodes(nil, peer, name)
			_, _, _ = st.VirtualIP(nil, peer, name)
			_, _ = st.ServiceProtocol(nil, name)
			_, _ = st.Served(name)
		}
		_, _, _ = st.TypicalServiceNames(nil, peer)
	}
}
