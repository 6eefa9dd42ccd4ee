package workloads

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"unsafe"
)

// watcher reports changes in a cgroup tree: a sub-cgroup created or
// removed (a new container or pod, or one gone), and cgroup.events
// modified (a cgroup got its first process or lost its last). New
// sub-cgroups are watched as they appear.
type watcher struct {
	f    *os.File
	poke func()

	mu    sync.Mutex
	paths map[int32]string
}

const dirMask = syscall.IN_CREATE | syscall.IN_DELETE | syscall.IN_ONLYDIR

func newWatcher(root string, poke func()) (*watcher, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	// Non-blocking, so the runtime poller serves Read and Close ends it.
	w := &watcher{f: os.NewFile(uintptr(fd), "inotify"), poke: poke, paths: map[int32]string{}}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			return w.add(path)
		}
		return nil
	})
	if err != nil {
		w.f.Close()
		return nil, err
	}
	return w, nil
}

// add watches a cgroup directory (sub-cgroups created and removed) and
// its cgroup.events file. The file is watched itself: kernfs notifies a
// change only to watchers of an inode it finds in the cache, and a watch
// on the directory alone does not put the file's inode there.
func (w *watcher) add(path string) error {
	wd, err := syscall.InotifyAddWatch(int(w.f.Fd()), path, dirMask)
	if err != nil {
		return fmt.Errorf("inotify watch %s: %w", path, err)
	}
	w.mu.Lock()
	w.paths[int32(wd)] = path
	w.mu.Unlock()
	// A cgroup without the file (the v2 root has none) is watched for
	// sub-cgroups only.
	_, _ = syscall.InotifyAddWatch(int(w.f.Fd()), filepath.Join(path, "cgroup.events"), syscall.IN_MODIFY)
	return nil
}

// run reads events until ctx ends.
func (w *watcher) run(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { w.f.Close() })
	defer stop()
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return // closed
		}
		changed := false
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
			off += syscall.SizeofInotifyEvent + int(ev.Len)
			name := string(nameBytes)
			for i := 0; i < len(name); i++ {
				if name[i] == 0 {
					name = name[:i]
					break
				}
			}
			switch {
			case ev.Mask&syscall.IN_CREATE != 0 && ev.Mask&syscall.IN_ISDIR != 0:
				w.mu.Lock()
				parent := w.paths[ev.Wd]
				w.mu.Unlock()
				if parent != "" {
					_ = w.add(filepath.Join(parent, name))
				}
				changed = true
			case ev.Mask&syscall.IN_IGNORED != 0:
				w.mu.Lock()
				delete(w.paths, ev.Wd)
				w.mu.Unlock()
			case ev.Mask&syscall.IN_DELETE != 0 && ev.Mask&syscall.IN_ISDIR != 0:
				changed = true
			case ev.Mask&syscall.IN_MODIFY != 0:
				changed = true // cgroup.events: populated changed
			case ev.Mask&syscall.IN_Q_OVERFLOW != 0:
				changed = true
			}
		}
		if changed {
			w.poke()
		}
	}
}
