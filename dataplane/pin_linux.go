package dataplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Pin layout under Config.PinDir:
//
//	<layer>/<map name>          maps, by name (re-opened on the next Start)
//	<layer>/prog_<program>      the programs last attached (for bpftool)
//	<layer>/link_<attachment>   bpf_links (cgroup, TCX): updated in place
//	                            on the next Start, so attachments never gap
//	peer_ids                    the peer-id registry (name -> id), written
//	                            by Sync, so peers keep their ids and counters

// undo collects rollback steps (rollback runs them newest first) and the
// steps that release what a rollback would have needed (commit).
type undo struct {
	steps, commits []func()
}

func (u *undo) add(f func()) { u.steps = append(u.steps, f) }

func (u *undo) onCommit(f func()) { u.commits = append(u.commits, f) }

func (u *undo) rollback() {
	for i := len(u.steps) - 1; i >= 0; i-- {
		u.steps[i]()
	}
	u.steps, u.commits = nil, nil
}

func (u *undo) commit() {
	for _, f := range u.commits {
		f()
	}
	u.steps, u.commits = nil, nil
}

// pinMaps marks the named maps of spec for pinning by name.
func pinMaps(spec *ebpf.CollectionSpec, names ...string) error {
	for _, n := range names {
		m, ok := spec.Maps[n]
		if !ok {
			return fmt.Errorf("object has no map %q", n)
		}
		m.Pinning = ebpf.PinByName
	}
	return nil
}

// loadPinned loads spec with its pinned maps re-opened from dir. Pinned
// maps that no longer match the spec (a changed program) are replaced: their
// contents are rebuilt from configuration by the caller.
func loadPinned(spec *ebpf.CollectionSpec, dir string, to any) (replaced bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("create pin dir: %w", err)
	}
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}}
	err = spec.LoadAndAssign(to, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		for name, m := range spec.Maps {
			if m.Pinning == ebpf.PinByName {
				_ = os.Remove(filepath.Join(dir, name))
			}
		}
		return true, spec.LoadAndAssign(to, opts)
	}
	return false, err
}

// pinProgram (re)pins prog at dir/prog_<name>.
func pinProgram(dir, name string, prog *ebpf.Program) error {
	p := filepath.Join(dir, "prog_"+name)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpin %s: %w", p, err)
	}
	if err := prog.Pin(p); err != nil {
		return fmt.Errorf("pin program %s: %w", name, err)
	}
	return nil
}

// updatePinned re-opens the link pinned at path and, when keep accepts its
// info, points it at prog (BPF_LINK_UPDATE: atomic, nothing detaches). On
// success it returns the link and registers an undo that restores the
// previous program. A pinned link that keep refuses or that cannot be
// updated (e.g. defunct because its cgroup or interface is gone) is
// detached and its pin removed; then it returns nil, nil.
func updatePinned(path string, prog *ebpf.Program, keep func(*link.Info) bool, u *undo) (link.Link, error) {
	l, err := link.LoadPinnedLink(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		// Not a link (or unreadable): drop the pin and attach anew.
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale pin %s: %w", path, rerr)
		}
		return nil, nil
	}
	info, ierr := l.Info()
	if ierr == nil && keep(info) {
		old, _ := ebpf.NewProgramFromID(info.Program)
		if uerr := l.Update(prog); uerr == nil {
			u.add(func() {
				if old != nil {
					_ = l.Update(old)
					_ = old.Close()
				}
				_ = l.Close()
			})
			if old != nil {
				u.onCommit(func() { _ = old.Close() })
			}
			return l, nil
		}
		if old != nil {
			_ = old.Close()
		}
	}
	_ = detach(l)
	return nil, nil
}

// detach detaches l from its hook at once (BPF_LINK_DETACH), then removes
// its pin and closes it. Unpinning and closing alone detach only when the
// kernel drops the link's last reference, and the pin's reference goes
// with the bpffs inode: on 5.10 that happens after an RCU grace period and
// a workqueue pass, so the program kept running for up to ~40 ms after
// Cleanup returned. Kernels without the command (before 5.9: cgroup links
// of 5.7 and 5.8) answer EOPNOTSUPP or EINVAL; there the release stays
// deferred.
func detach(l link.Link) error {
	var errs []error
	if err := l.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, unix.EINVAL) {
		errs = append(errs, err)
	}
	if err := l.Unpin(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(append(errs, l.Close())...)
}

// attachPinned keeps or creates the link pinned at path: updatePinned
// first, else attach() and pin the result. reused reports an update in
// place.
func attachPinned(path string, prog *ebpf.Program, keep func(*link.Info) bool, attach func() (link.Link, error), u *undo) (l link.Link, reused bool, err error) {
	l, err = updatePinned(path, prog, keep, u)
	if err != nil {
		return nil, false, err
	}
	if l != nil {
		return l, true, nil
	}
	l, err = attach()
	if err != nil {
		return nil, false, err
	}
	if err := l.Pin(path); err != nil {
		_ = l.Close()
		return nil, false, fmt.Errorf("pin link %s: %w", path, err)
	}
	u.add(func() { _ = detach(l) })
	return l, false, nil
}

// Cleanup detaches and removes everything a Dataplane pinned under pinDir
// (DefaultPinDir when empty): pinned links are detached (at once where
// the kernel has BPF_LINK_DETACH, 5.9+), unpinned and closed; maps and programs are unpinned; the TC clsact filters
// running the pinned TC programs are deleted from the caller's network
// namespace (call it in the namespace of Config.Interfaces); when a
// capture layer was pinned there, peerd's unreachable routes (protocol
// 0x70, Config.UnreachablePrefixes) are deleted from the caller's network
// namespace too; then the directory itself is removed. It is safe to call
// when nothing is pinned.
func Cleanup(pinDir string) error {
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	var errs []error
	progIDs := map[uint32]bool{}
	for _, name := range []string{"prog_ingress", "prog_egress"} {
		if p, err := ebpf.LoadPinnedProgram(filepath.Join(pinDir, LayerTC, name), nil); err == nil {
			if info, err := p.Info(); err == nil {
				if id, ok := info.ID(); ok {
					progIDs[uint32(id)] = true
				}
			}
			_ = p.Close()
		}
	}
	if _, err := os.Stat(filepath.Join(pinDir, LayerCapture)); err == nil {
		if err := removeAllUnreachable(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := deleteClsactFilters(progIDs); err != nil {
		errs = append(errs, err)
	}
	// Links first so nothing stays attached while its maps go away.
	var rest []string
	err := filepath.WalkDir(pinDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), "link_") {
			if l, lerr := link.LoadPinnedLink(p, nil); lerr == nil {
				if derr := detach(l); derr != nil {
					errs = append(errs, fmt.Errorf("detach %s: %w", p, derr))
				}
				return nil
			}
		}
		rest = append(rest, p)
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("walk %s: %w", pinDir, err))
	}
	for _, p := range rest {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(pinDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
