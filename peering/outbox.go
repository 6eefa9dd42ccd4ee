package peering

import (
	"context"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/peerd/peerd/peering/pbpeerstream"
)

// outbox queues messages for the writer: control messages (ACKs,
// subscriptions, heartbeats) before bulk responses. Pushing never blocks,
// so the receive loop cannot deadlock against a peer that is not reading;
// the exporter waits for room (waitRoom) instead.
type outbox struct {
	mu        sync.Mutex
	prio      []outEntry
	bulk      []outEntry
	bulkBytes int
	wake      chan struct{}
	room      chan struct{}
}

type outEntry struct {
	msg  *pbpeerstream.ReplicationMessage
	size int
	done chan struct{}
	// last ends the writing: nothing is sent after it, and a client
	// stream is half-closed.
	last bool
}

func newOutbox() *outbox {
	return &outbox{wake: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (o *outbox) push(m *pbpeerstream.ReplicationMessage, prio bool) {
	o.mu.Lock()
	if prio {
		o.prio = append(o.prio, outEntry{msg: m})
	} else {
		e := outEntry{msg: m, size: proto.Size(m)}
		o.bulk = append(o.bulk, e)
		o.bulkBytes += e.size
	}
	o.mu.Unlock()
	signal(o.wake)
}

// pushLast queues the final message, before everything still queued;
// done is closed once it is sent.
func (o *outbox) pushLast(m *pbpeerstream.ReplicationMessage, done chan struct{}) {
	o.mu.Lock()
	o.prio = append([]outEntry{{msg: m, done: done, last: true}}, o.prio...)
	o.mu.Unlock()
	signal(o.wake)
}

func (o *outbox) pop() (outEntry, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.prio) > 0 {
		e := o.prio[0]
		o.prio[0] = outEntry{}
		o.prio = o.prio[1:]
		return e, true
	}
	if len(o.bulk) > 0 {
		e := o.bulk[0]
		o.bulk[0] = outEntry{}
		o.bulk = o.bulk[1:]
		o.bulkBytes -= e.size
		signal(o.room)
		return e, true
	}
	return outEntry{}, false
}

// prioLen is how many control messages are queued.
func (o *outbox) prioLen() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.prio)
}

// waitRoom blocks while more than limit bytes of responses are queued.
func (o *outbox) waitRoom(ctx context.Context, limit int) error {
	for {
		o.mu.Lock()
		queued := o.bulkBytes
		o.mu.Unlock()
		if queued <= limit {
			return nil
		}
		select {
		case <-o.room:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}
