package cgroupfs

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/peerd/peerd/internal/netutil"
)

var (
	// ErrNotSupported is internal/netutil's: cgroup v2 ids need Linux.
	ErrNotSupported = netutil.ErrNotSupported
	// ErrNotFound: no cgroup with that id under the resolver's root.
	ErrNotFound = errors.New("no cgroup with this id under the root")
	// ErrNotCgroup2: the path is not on a cgroup v2 file system.
	ErrNotCgroup2 = errors.New("not a cgroup v2 directory")
	// ErrNotUUID: a pod UID that is not a UUID.
	ErrNotUUID = errors.New("not a UUID")
)

// Dir is what Stat finds about a cgroup v2 directory.
type Dir struct {
	// ID is the cgroup's id (see ID).
	ID uint64
	// Root is true for the root of the hierarchy (or of the caller's
	// cgroup namespace): every process of the host is below it.
	Root bool
}

// Within reports whether path is root or a directory below it, compared
// lexically after filepath.Clean; both must be absolute.
func Within(root, path string) bool {
	if !filepath.IsAbs(root) || !filepath.IsAbs(path) {
		return false
	}
	root, path = filepath.Clean(root), filepath.Clean(path)
	if path == root {
		return true
	}
	if root == "/" {
		return true
	}
	return strings.HasPrefix(path, root+"/")
}

// ParseUID checks that s is a UUID (8-4-4-4-12 hex digits, as Kubernetes
// writes metadata.uid) and returns it in lower case.
func ParseUID(s string) (string, error) {
	if len(s) != 36 {
		return "", fmt.Errorf("%q: %w (want 8-4-4-4-12 hex digits, as metadata.uid)", s, ErrNotUUID)
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return "", fmt.Errorf("%q: %w (want 8-4-4-4-12 hex digits, as metadata.uid)", s, ErrNotUUID)
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		case 'A' <= c && c <= 'F':
			b[i] = c + ('a' - 'A')
		default:
			return "", fmt.Errorf("%q: %w (want 8-4-4-4-12 hex digits, as metadata.uid)", s, ErrNotUUID)
		}
	}
	return string(b), nil
}

// PodUID returns the UID of the Kubernetes pod whose cgroup path is (or
// contains) path, in either kubelet driver's layout (see the package
// doc), or false when path is no pod's. A path with several pod levels
// (a kubelet inside a pod) gives the deepest.
func PodUID(path string) (uid string, ok bool) {
	kube := false
	for _, c := range strings.Split(path, "/") {
		if name, isSlice := strings.CutSuffix(c, ".slice"); isSlice {
			segs := strings.Split(name, "-")
			k := -1
			for i, s := range segs {
				if s == "kubepods" {
					k = i
				}
			}
			if k < 0 {
				continue
			}
			kube = true
			if last := segs[len(segs)-1]; k < len(segs)-1 {
				if s, isPod := strings.CutPrefix(last, "pod"); isPod && !strings.Contains(s, "-") {
					if u, err := ParseUID(strings.ReplaceAll(s, "_", "-")); err == nil {
						uid = u
					}
				}
			}
			continue
		}
		if c == "kubepods" {
			kube = true
			continue
		}
		if s, isPod := strings.CutPrefix(c, "pod"); kube && isPod {
			if u, err := ParseUID(s); err == nil {
				uid = u
			}
		}
	}
	return uid, uid != ""
}
