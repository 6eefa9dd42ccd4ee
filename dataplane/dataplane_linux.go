package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// Dataplane is a loaded set of layers. Its methods are safe for
// concurrent use.
type Dataplane struct {
	cfg    Config
	log    *slog.Logger
	kernel string

	mu      sync.Mutex
	started bool
	closed  bool
	peers   *ebpf.Map // the peer-id registry, opened by the first Sync (sync_linux.go)
	capture *captureLayer
	fast    *fastLayer
	tc      *tcLayer
	inbound *inboundLayer
	// Why layers that were requested are not loaded.
	offErrs map[string]error
}

// New validates cfg and returns a dataplane with nothing loaded yet.
// Invalid configuration (a missing or root cgroup, an unknown interface, a
// bad listener) is an error.
func New(cfg Config) (*Dataplane, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Dataplane{cfg: cfg, log: cfg.logger().With("component", "dataplane"), kernel: kernelRelease(), offErrs: map[string]error{}}, nil
}

// Start probes, loads, attaches and pins each requested layer. A layer
// whose kernel features are missing, or that fails to load or attach, is
// rolled back completely and reported off in Status with the reason; the
// other layers are unaffected, and Start still succeeds. It fails after
// Close or a second time, and with capture on when a range of
// UnreachablePrefixes overlaps an address or route of the namespace
// (then nothing is loaded).
func (d *Dataplane) Start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return errors.New("start the dataplane: dataplane closed")
	case d.started:
		return errors.New("start the dataplane: already started")
	}
	d.started = true
	cfg := d.cfg
	dir := cfg.pinDir()
	if cfg.Capture {
		// Bad input, refused before anything is loaded.
		if err := checkUnreachable(cfg.UnreachablePrefixes); err != nil {
			return err
		}
	}
	// Kernels before 5.11 charge eBPF maps to RLIMIT_MEMLOCK (64 KiB by
	// default), so every map create fails with EPERM; later kernels charge
	// the memory cgroup and RemoveMemlock does nothing. Lifting it needs
	// CAP_SYS_RESOURCE (the systemd unit grants it); without, the layers
	// report the kernel's refusal.
	if err := rlimit.RemoveMemlock(); err != nil {
		d.log.Warn("could not lift RLIMIT_MEMLOCK; kernels before 5.11 will refuse the eBPF maps", "err", err)
	}

	type step struct {
		name  string
		on    bool
		needs []requirement
		load  func(dir string) error
	}
	steps := []step{
		{LayerCapture, cfg.Capture, captureNeeds, func(dir string) error {
			l, err := loadCapture(&cfg, dir, d.log)
			if err == nil {
				d.capture = l
			}
			return err
		}},
		{LayerFastPath, cfg.FastPath, fastPathNeeds, func(dir string) error {
			l, err := loadFastPath(&cfg, dir, d.log)
			if err == nil {
				d.fast = l
			}
			return err
		}},
		{LayerTC, len(cfg.Interfaces) > 0, tcNeeds, func(dir string) error {
			l, err := loadTC(&cfg, dir)
			if err == nil {
				d.tc = l
			}
			return err
		}},
		{LayerInbound, len(cfg.InboundPrefixes) > 0, inboundNeeds, func(dir string) error {
			l, err := loadInbound(&cfg, dir)
			if err == nil {
				d.inbound = l
			}
			return err
		}},
	}
	for _, s := range steps {
		if !s.on {
			continue
		}
		if err := probe(s.name, s.needs, cfg.probeOverride); err != nil {
			d.off(s.name, err)
			continue
		}
		if err := s.load(filepath.Join(dir, s.name)); err != nil {
			d.off(s.name, err)
			continue
		}
		d.log.Info("layer loaded", "layer", s.name, "pin_dir", filepath.Join(dir, s.name), "kernel", d.kernel)
	}
	return nil
}

func (d *Dataplane) off(layer string, err error) {
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		d.log.Debug("verifier log", "layer", layer, "log", fmt.Sprintf("%+v", verr))
	}
	err = notSupported(err)
	d.offErrs[layer] = err
	d.log.Warn("layer off", "layer", layer, "reason", err.Error(), "kernel", d.kernel)
}

// Close releases the process's handles on programs, maps and links. The
// pins stay, and with them every attachment: traffic keeps flowing until
// the next Start updates them or Cleanup removes them. It is idempotent;
// it starts no goroutine, so there is nothing to wait for, and releasing
// handles does not block on ctx.
func (d *Dataplane) Close(_ context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	if d.capture != nil {
		errs = append(errs, d.capture.close())
	}
	if d.fast != nil {
		errs = append(errs, d.fast.close())
	}
	if d.tc != nil {
		errs = append(errs, d.tc.close())
	}
	if d.inbound != nil {
		errs = append(errs, d.inbound.close())
	}
	if d.peers != nil {
		errs = append(errs, d.peers.Close())
	}
	return errors.Join(errs...)
}

// Cleanup closes d and removes everything pinned under its PinDir (see the
// package function Cleanup), detaching what the pins held, and the
// unreachable routes of Config.UnreachablePrefixes from the caller's
// network namespace; use it instead of Close when nothing should stay
// attached.
func (d *Dataplane) Cleanup(ctx context.Context) error {
	errs := []error{d.Close(ctx), Cleanup(d.cfg.pinDir())}
	if d.cfg.Capture {
		errs = append(errs, removeUnreachable(d.cfg.UnreachablePrefixes))
	}
	return errors.Join(errs...)
}

// Status reports every layer. Counter read errors are reported in the
// layer's Err and Reason.
func (d *Dataplane) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Status{Kernel: d.kernel, PinDir: d.cfg.pinDir()}
	s.Capture = d.offStatus(LayerCapture, d.cfg.Capture)
	s.FastPath = d.offStatus(LayerFastPath, d.cfg.FastPath)
	s.TC = d.offStatus(LayerTC, len(d.cfg.Interfaces) > 0)
	s.Inbound = d.offStatus(LayerInbound, len(d.cfg.InboundPrefixes) > 0)
	if d.closed {
		return s
	}
	if d.capture != nil {
		d.capture.status(&s.Capture)
	}
	if d.fast != nil {
		d.fast.status(&s.FastPath)
	}
	if d.tc != nil {
		d.tc.status(&s.TC)
	}
	if d.inbound != nil {
		d.inbound.status(&s.Inbound)
	}
	return s
}

// offStatus is a layer's status before its layer fills it in: enabled or
// not, and why it is off.
func (d *Dataplane) offStatus(layer string, enabled bool) LayerStatus {
	s := LayerStatus{Enabled: enabled}
	if err := d.offErrs[layer]; err != nil {
		s.fail(err)
	}
	return s
}

// count returns the number of entries of m (keys only, so it works for
// every map type).
func count(m *ebpf.Map) (int, error) {
	var n int
	var key any // nil: start from the first key
	next := make([]byte, m.KeySize())
	for n <= int(m.MaxEntries()) {
		err := m.NextKey(key, &next)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
		cur := append([]byte(nil), next...)
		key = cur
	}
	return n, nil
}

// readCounters sums a PERCPU_ARRAY of u64 counters.
func readCounters(m *ebpf.Map, names []string) (map[string]uint64, error) {
	out := make(map[string]uint64, len(names))
	for i, name := range names {
		var per []uint64
		if err := m.Lookup(uint32(i), &per); err != nil {
			return out, fmt.Errorf("read counter %s: %w", name, err)
		}
		var sum uint64
		for _, v := range per {
			sum += v
		}
		out[name] = sum
	}
	return out, nil
}

func (d *Dataplane) layerOn(l any) error {
	if d.closed {
		return errors.New("dataplane closed")
	}
	switch v := l.(type) {
	case *captureLayer:
		if v == nil {
			return fmt.Errorf("%s: %w", LayerCapture, ErrLayerOff)
		}
	case *fastLayer:
		if v == nil {
			return fmt.Errorf("%s: %w", LayerFastPath, ErrLayerOff)
		}
	case *tcLayer:
		if v == nil {
			return fmt.Errorf("%s: %w", LayerTC, ErrLayerOff)
		}
	case *inboundLayer:
		if v == nil {
			return fmt.Errorf("%s: %w", LayerInbound, ErrLayerOff)
		}
	}
	return nil
}
