package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"

	"github.com/peerd/peerd/agent/httpapi"
	"github.com/peerd/peerd/internal/sdnotify"
	"github.com/peerd/peerd/internal/sockets"
)

// reloadCatchUpWait bounds how long a new process waits, after its agent
// started, for a leader and its state to catch up before it takes over.
const reloadCatchUpWait = 30 * time.Second

// dnsHandOverGrace is how long a handing-over DNS server answers the TCP
// connections it accepted before it shuts down.
const dnsHandOverGrace = time.Second

// budget bounds one drain step: d in a normal shutdown; in a handover the
// step runs until ctx's deadline (-reload-drain-timeout), shared by all.
func (a *Agent) budget(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if a.handover {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// HandOver stops an agent whose listeners a new process has taken over:
// the workload namespaces' listeners close, and the terminator, DNS and
// the HTTP API stop accepting at once and drain
// their open connections together, up to drain; then the local state
// stops and Close releases the rest (gossip, raft and its store, the
// gRPC servers; the dataplane with its pins kept, in dev mode too). The
// node does not leave the cluster: the new process is the same node.
func (a *Agent) HandOver(ctx context.Context, drain time.Duration) error {
	if !a.started {
		return errNotStarted
	}
	a.handover = true
	steps := a.shutdownSteps()
	byName := map[string]shutdownStep{}
	for _, s := range steps {
		byName[s.name] = s
	}
	var err error
	a.drainOnce.Do(func() {
		a.api.SetPhase(httpapi.PhaseShuttingDown)
		dctx, cancel := context.WithTimeout(ctx, drain)
		defer cancel()
		// The workload namespaces' listeners are not passed on: the new
		// process opens them again in the pods' namespaces.
		parallel := []string{"workload namespaces", "terminator", "DNS server", "HTTP API"}
		errs := make(chan error, len(parallel))
		for _, name := range parallel {
			go func() {
				if name == "DNS server" && a.dns != nil {
					// Queries on accepted TCP connections are read before
					// the server's shutdown would cut them.
					a.dns.StopAccepting()
					select {
					case <-time.After(dnsHandOverGrace):
					case <-dctx.Done():
					}
				}
				errs <- byName[name].run(dctx)
			}()
		}
		var all []error
		for range parallel {
			all = append(all, <-errs)
		}
		all = append(all, byName["local state"].run(ctx))
		err = errors.Join(all...)
	})
	return errors.Join(err, a.Close(ctx))
}

// RunReloadable is Run for the daemon: like Run, and on SIGHUP it hands
// over to a new process started from the same executable path with the
// same arguments (a new binary there is picked up; the configuration is
// read anew), without closing a listening socket:
//
//  1. The old process passes its listening sockets (HTTP, HTTPS, gRPC,
//     TLS gRPC, gateway, transparent, upstream, DNS UDP and TCP, metrics)
//     to the new one with github.com/cloudflare/tableflip.
//  2. The new process parses its configuration and takes the sockets
//     over; connections arriving now queue in their backlogs. In dev mode
//     (nothing on disk) it starts at once, beside the old one. With a
//     data dir it first asks the old process (SIGUSR2) to release the
//     state: the old one drains and closes, which frees the raft store,
//     and the new one opens it (bbolt waits for the file lock).
//  3. Once its agent serves and knows a leader with its state caught up
//     (up to 30 s), the new process tells systemd it is the main process
//     (MAINPID=; before the old one can exit, or systemd would stop the
//     unit), then the old one (tableflip Ready), then systemd READY=1.
//     The old one drains its open connections up to ReloadDrainTimeout,
//     closes and exits.
//
// If the new process fails (bad configuration, crash, no ready in time),
// the old one logs the error and keeps serving; if it had released its
// state already, it starts its agent again on the same sockets. Gossip
// and raft sockets are not passed (memberlist and the raft transport own
// them): the new process binds them after the old one closed them, so
// gossip pauses for the handover and raft reconnects.
func RunReloadable(ctx context.Context, cfg Config, out io.Writer) error {
	// First of all: SIGHUP's default action would kill a process still
	// starting. One that arrives now is handled once this one serves.
	hup := make(chan os.Signal, 1)
	release := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	signal.Notify(release, syscall.SIGUSR2)
	defer signal.Stop(hup)
	defer signal.Stop(release)
	upg, err := tableflip.New(tableflip.Options{UpgradeTimeout: cfg.ReloadDrainTimeout + reloadCatchUpWait + 2*time.Minute})
	if err != nil {
		return fmt.Errorf("prepare for reloads: %w", err)
	}
	defer upg.Stop()
	socks := sockets.NewHandover(upg.Fds)
	cfg.Sockets = socks
	notify := sdnotify.FromEnv()
	if upg.HasParent() && !cfg.Dev {
		parent := os.Getppid()
		cfg.BeforeState = func(ctx context.Context) error {
			return awaitRelease(ctx, cfg.DataDir, parent)
		}
	}
	if upg.HasParent() {
		// Serving means answering as the old process did: a restarted
		// server's reads need a leader and its log replayed. Connections
		// queue on the sockets meanwhile.
		cfg.CatchUpBeforeServing = reloadCatchUpWait
	}
	a, err := New(cfg)
	if err != nil {
		return err
	}
	if err := a.Start(); err != nil {
		return err
	}
	if upg.HasParent() {
		// systemd must know the new main process before the old one
		// exits: it exits as soon as Ready tells it to, and systemd,
		// seeing its main process gone, would stop the unit and kill
		// this one. systemd reads notifications before SIGCHLD.
		a.sendNotify(notify, fmt.Sprintf("MAINPID=%d", os.Getpid()))
	}
	if err := upg.Ready(); err != nil {
		if upg.HasParent() {
			a.sendNotify(notify, fmt.Sprintf("MAINPID=%d", os.Getppid()))
		}
		_ = a.Close(context.Background())
		return fmt.Errorf("tell the old process this one serves: %w", err)
	}
	if upg.HasParent() {
		a.log.Info("reload: serving, took over from the old process", "pid", os.Getpid())
		a.sendNotify(notify, fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid()))
	} else {
		a.sendNotify(notify, "READY=1")
	}
	a.PrintBanner(out)

	var upgraded chan error // non-nil while a reload runs
	released := false
	for {
		select {
		case <-ctx.Done():
			a.log.Info("shutting down", "leave", cfg.LeaveOnTerminate)
			a.sendNotify(notify, "STOPPING=1")
			var errs []error
			if cfg.LeaveOnTerminate {
				errs = append(errs, a.Leave(context.Background()))
			}
			errs = append(errs, a.Close(context.Background()))
			return errors.Join(errs...)
		case <-hup:
			if upgraded != nil {
				a.log.Warn("reload: one is already running; SIGHUP ignored")
				continue
			}
			a.log.Info("reload: starting a new process", "path", os.Args[0])
			a.sendNotify(notify, fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", sdnotify.MonotonicUsec()))
			if err := socks.Freeze(); err != nil {
				a.log.Error("reload failed: this process keeps serving", "err", err)
				socks.Thaw()
				a.sendNotify(notify, "READY=1")
				continue
			}
			upgraded = make(chan error, 1)
			go func() { upgraded <- upg.Upgrade() }()
		case <-release:
			if upgraded == nil || released {
				a.log.Warn("SIGUSR2 outside a reload: ignored")
				continue
			}
			// The new process holds the sockets and waits for the raft
			// store: drain, then close it.
			released = true
			start := time.Now()
			err := a.HandOver(context.Background(), cfg.ReloadDrainTimeout)
			if werr := os.WriteFile(releasedFile(cfg.DataDir), []byte(strconv.Itoa(os.Getpid())), 0o600); werr != nil {
				err = errors.Join(err, fmt.Errorf("tell the new process the state is released: %w", werr))
			}
			a.log.Info("reload: state released to the new process", "drained_in", time.Since(start).Round(time.Millisecond), "err", err)
		case err := <-upgraded:
			upgraded = nil
			if err != nil {
				a.log.Error("reload failed: the new process did not become ready; this process keeps serving", "err", err)
				if released {
					released = false
					cfg.BeforeState = nil // whatever parent this process had is gone
					cfg.CatchUpBeforeServing = reloadCatchUpWait
					if a, err = New(cfg); err == nil {
						err = a.Start()
					}
					if err != nil {
						return fmt.Errorf("restart after a failed reload: %w", err)
					}
					a.log.Info("reload: serving again after the failed reload")
				}
				socks.Thaw()
				// The new process may have named itself the main one.
				a.sendNotify(notify, fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid()))
				continue
			}
			start := time.Now()
			if !released {
				if err := a.HandOver(context.Background(), cfg.ReloadDrainTimeout); err != nil {
					a.log.Warn("reload: drain", "err", err)
				}
			}
			a.log.Info("reload: handed over to the new process; exiting", "drained_in", time.Since(start).Round(time.Millisecond))
			return nil
		}
	}
}

// sendNotify sends state to systemd and logs a failure.
func (a *Agent) sendNotify(n sdnotify.Notifier, state string) {
	if err := n.Send(state); err != nil {
		a.log.Warn("tell systemd the service state", "state", state, "err", err)
	}
}

// releasedFile is where a process that handed over writes its PID once it
// has closed its state (raft and its store, the gossip and raft ports).
func releasedFile(dataDir string) string { return filepath.Join(dataDir, "reload-released") }

// awaitRelease asks the old process (SIGUSR2) to drain and release the
// state in dataDir, and waits until it says it has (releasedFile holds
// its PID) or ctx ends. The sockets it passed are ours meanwhile:
// connections queue in their backlogs.
func awaitRelease(ctx context.Context, dataDir string, parent int) error {
	file := releasedFile(dataDir)
	if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reload: clear %s: %w", file, err)
	}
	if err := syscall.Kill(parent, syscall.SIGUSR2); err != nil {
		return fmt.Errorf("reload: ask the old process (pid %d) to release %s: %w", parent, dataDir, err)
	}
	want := strconv.Itoa(parent)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(file); err == nil && string(b) == want {
			_ = os.Remove(file)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("reload: wait for the old process (pid %d) to release %s: %w", parent, dataDir, ctx.Err())
		case <-tick.C:
		}
	}
}
