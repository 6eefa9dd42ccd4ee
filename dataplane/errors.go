package dataplane

import (
	"errors"

	"github.com/cilium/ebpf"

	"github.com/peerd/peerd/internal/netutil"
)

var (
	// ErrNotSupported is internal/netutil's: the kernel or the platform
	// lacks a feature. Errors that match cilium/ebpf's ErrNotSupported
	// (a failed feature probe, TCX on a kernel before 6.6) match it too
	// once they reach LayerStatus.Err.
	ErrNotSupported = netutil.ErrNotSupported

	// ErrLayerOff is returned by methods that need a layer that is not
	// loaded.
	ErrLayerOff = errors.New("dataplane layer not loaded")

	// ErrRootCgroup is returned for a CgroupPath that is the root of a
	// cgroup v2 hierarchy when AllowRootCgroup is not set.
	ErrRootCgroup = errors.New("refusing to attach to the root cgroup (set AllowRootCgroup to allow it)")

	// ErrMPTCPListener is returned by SetInboundListener for an MPTCP
	// listener, which a SOCKMAP cannot hold. Since Go 1.24, net.Listen and
	// net.ListenConfig create MPTCP listeners on Linux by default; create
	// the gateway's listener with ListenInbound (or
	// net.ListenConfig.SetMultipathTCP(false)) instead.
	ErrMPTCPListener = errors.New("MPTCP listener: the inbound layer needs a plain TCP listener (see ListenInbound)")
)

// notSupported returns err so that it matches ErrNotSupported when it
// matches cilium/ebpf's ErrNotSupported; any other error is returned as it
// is. The message does not change.
func notSupported(err error) error {
	if err == nil || errors.Is(err, ErrNotSupported) || !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	return unsupportedError{err}
}

// unsupportedError is an error of cilium/ebpf's that answers
// Is(ErrNotSupported).
type unsupportedError struct{ err error }

func (e unsupportedError) Error() string        { return e.err.Error() }
func (e unsupportedError) Unwrap() error        { return e.err }
func (e unsupportedError) Is(target error) bool { return target == ErrNotSupported }
