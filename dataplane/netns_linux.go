package dataplane

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/peerd/peerd/internal/netutil"
)

// ownNetnsCookie is the cookie of the calling thread's network namespace
// (the dataplane's: connects from there are the host's), read from a
// throwaway socket (netutil.CurrentNetnsCookie: SO_NETNS_COOKIE, Linux >= 5.14).
func ownNetnsCookie() (uint64, error) {
	c, err := netutil.CurrentNetnsCookie()
	if err != nil {
		return 0, fmt.Errorf("netns cookie of the dataplane's namespace: %w", notSupported(errors.Join(err, ebpf.ErrNotSupported)))
	}
	return c, nil
}

// SetWorkloadNetns marks the network namespace with this cookie ready: the
// terminator's listeners are up there, so connects from it to virtual IPs
// are captured from now on instead of refused.
func (d *Dataplane) SetWorkloadNetns(cookie uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.capture); err != nil {
		return err
	}
	if err := d.netnsOn(); err != nil {
		return err
	}
	if cookie == 0 {
		return errors.New("set workload netns: cookie 0 is no namespace (read it with netutil.NetnsCookie on a socket there)")
	}
	if err := d.capture.objs.WorkloadNetns.Put(cookie, uint32(1)); err != nil {
		return fmt.Errorf("set workload netns %d: %w", cookie, err)
	}
	return nil
}

// DeleteWorkloadNetns makes the namespace not ready again (its listeners
// are going away): its connects to virtual IPs are refused and announced.
// Deleting an absent namespace is not an error.
func (d *Dataplane) DeleteWorkloadNetns(cookie uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.capture); err != nil {
		return err
	}
	if err := d.netnsOn(); err != nil {
		return err
	}
	if err := d.capture.objs.WorkloadNetns.Delete(cookie); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete workload netns %d: %w", cookie, err)
	}
	// Announce it again at its next refused connect.
	_ = d.capture.objs.NetnsAnnounced.Delete(cookie)
	return nil
}

// WorkloadNetns lists the cookies of the ready workload namespaces.
func (d *Dataplane) WorkloadNetns() ([]uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.layerOn(d.capture); err != nil {
		return nil, err
	}
	if err := d.netnsOn(); err != nil {
		return nil, err
	}
	var out []uint64
	var k uint64
	var v uint32
	it := d.capture.objs.WorkloadNetns.Iterate()
	for it.Next(&k, &v) {
		out = append(out, k)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list workload netns: %w", err)
	}
	return out, nil
}

// netnsOn refuses the workload-namespace methods when the capture layer
// runs without the mode (kernels before 5.15). d.mu is held and d.capture
// loaded.
func (d *Dataplane) netnsOn() error {
	if !d.capture.netns {
		return fmt.Errorf("workload network namespaces: capture runs without them, the kernel lacks bpf_get_netns_cookie in sock_ops (Linux >= 5.15): %w", ErrNotSupported)
	}
	return nil
}

// netnsEventSize is sizeof(struct netns_event) in capture.c.
const netnsEventSize = 24

// ReadNetnsEvent blocks until the capture layer announces a namespace
// that is not ready, ctx is done (ctx.Err()) or the dataplane is closed
// (an error matching ErrLayerOff, as when capture is off). The dataplane
// runs no goroutine: call it in a loop from one goroutine of the caller's.
// Events queued while no one reads (or while the daemon restarts: the ring
// buffer is pinned) are returned first.
func (d *Dataplane) ReadNetnsEvent(ctx context.Context) (NetnsEvent, error) {
	d.mu.Lock()
	err := d.layerOn(d.capture)
	var rd *ringbuf.Reader
	if err == nil {
		rd = d.capture.events
		if nerr := d.netnsOn(); nerr != nil {
			d.mu.Unlock()
			return NetnsEvent{}, fmt.Errorf("read netns event: %w", nerr)
		}
	}
	d.mu.Unlock()
	if err != nil {
		if !errors.Is(err, ErrLayerOff) {
			err = fmt.Errorf("%w: %w", err, ErrLayerOff)
		}
		return NetnsEvent{}, fmt.Errorf("read netns event: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return NetnsEvent{}, err
	}
	// Flush wakes a blocked Read without its lock (SetDeadline would
	// wait for it): Read returns what is queued, then ErrFlushed.
	stop := context.AfterFunc(ctx, func() { _ = rd.Flush() })
	defer stop()
	for {
		rec, err := rd.Read()
		switch {
		case errors.Is(err, ringbuf.ErrFlushed):
			if ctx.Err() != nil {
				return NetnsEvent{}, ctx.Err()
			}
			continue // left by an earlier call's cancellation
		case errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed):
			return NetnsEvent{}, fmt.Errorf("read netns event: dataplane closed: %w", ErrLayerOff)
		case err != nil:
			return NetnsEvent{}, fmt.Errorf("read netns event: %w", err)
		}
		if len(rec.RawSample) < netnsEventSize {
			d.log.Warn("short netns event record; dropped", "bytes", len(rec.RawSample))
			continue
		}
		b := rec.RawSample
		return NetnsEvent{
			NetnsCookie: binary.LittleEndian.Uint64(b[0:]),
			CgroupID:    binary.LittleEndian.Uint64(b[8:]),
			PID:         binary.LittleEndian.Uint32(b[16:]),
		}, nil
	}
}
