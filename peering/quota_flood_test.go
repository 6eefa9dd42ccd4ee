package peering

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/peerd/peerd/peering/pbpeerstream"
)

// heapInUse is the live heap after two collections (the second empties
// the pools the first left).
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// TestChunkFloodBounded is issue 12's chunk flood: first chunks of 40
// resources that never finish, each 6.4 MiB, kept 258 MiB alive. With the
// default in-flight quota (64 MiB) the acceptor holds at most that much
// and NACKs the rest with ResourceExhausted.
func TestChunkFloodBounded(t *testing.T) {
	// The raw peer sends no heartbeats; the flood takes seconds.
	// The raw peer sends no heartbeats: the stale-stream bound (3 heartbeat
	// intervals, 600 ms here) would reset the stream between two slow sends.
	a := newTestCluster(t, "a", "dc1", func(c *Config) { c.HeartbeatTimeout, c.StaleStreamTimeout = time.Minute, time.Minute })
	rp, _ := openRaw(t, a)
	const n, size, quota = 40, 6<<20 + 400<<10, 64 << 20
	payload := bytes.Repeat([]byte{0x0a}, size)
	before := heapInUse()
	nacked := 0
	for i := range n {
		nonce := fmt.Sprintf("flood-%02d", i)
		rp.send(&pbpeerstream.ReplicationMessage{Payload: &pbpeerstream.ReplicationMessage_Response{Response: &pbpeerstream.Response{
			ResourceUrl: pbpeerstream.TypeURLExportedService, ResourceId: fmt.Sprintf("svc-%02d", i), Nonce: nonce, Version: 1,
			Operation: pbpeerstream.Operation_OPERATION_UPSERT, ChunkIndex: 0, ChunkCount: 2, Resource: payload,
		}}})
		reply := rp.next("the answer to "+nonce, func(m *pbpeerstream.ReplicationMessage) bool {
			return m.GetRequest().GetResponseNonce() == nonce
		}).GetRequest()
		if e := reply.GetError(); e != nil {
			if e.GetCode() != int32(codes.ResourceExhausted) {
				t.Fatalf("NACK of %s: got code %d (%s), want ResourceExhausted", nonce, e.GetCode(), e.GetMessage())
			}
			nacked++
		}
	}
	held := heapInUse() - before
	t.Logf("%d first chunks of %d bytes: %d NACKed, heap grew by %d MiB", n, size, nacked, held>>20)
	if held > quota+16<<20 {
		t.Errorf("the acceptor holds %d MiB after the flood, want at most the %d MiB quota (+16 MiB slack)", held>>20, quota>>20)
	}
	if want := n - quota/size; nacked < want {
		t.Errorf("got %d NACKs, want at least %d (every first chunk past the quota)", nacked, want)
	}
}
