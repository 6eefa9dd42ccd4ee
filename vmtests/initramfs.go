package vmtests

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DefaultModules are the modules the dataplane tests need in a Debian
// guest: veth pairs, the clsact qdisc and the BPF classifier, plus the
// netlink families (XFRM, netfilter) that vishvananda/netlink's
// NewHandleAt opens: without them it fails with "protocol not supported".
var DefaultModules = []string{"veth", "sch_ingress", "cls_bpf", "xfrm_user", "nfnetlink"}

// File is one regular file of an initramfs.
type File struct {
	Path string // inside the archive, without a leading slash
	Mode os.FileMode
	Data []byte
}

// cpioWriter writes the "newc" format the kernel unpacks.
type cpioWriter struct {
	w    io.Writer
	ino  uint32
	dirs map[string]bool
	err  error
}

func (c *cpioWriter) header(name string, mode uint32, size int) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	_, c.err = io.WriteString(c.w, hdr+name+"\x00")
	c.pad(len(hdr) + len(name) + 1)
}

func (c *cpioWriter) pad(n int) {
	if c.err == nil && n%4 != 0 {
		_, c.err = c.w.Write(make([]byte, 4-n%4))
	}
}

func (c *cpioWriter) dir(name string) {
	if name == "." || name == "" || c.dirs[name] {
		return
	}
	c.dir(path.Dir(name))
	c.dirs[name] = true
	c.header(name, 0o040755, 0)
}

func (c *cpioWriter) file(f File) {
	c.dir(path.Dir(f.Path))
	c.header(f.Path, 0o100000|uint32(f.Mode.Perm()), len(f.Data))
	if c.err == nil {
		_, c.err = c.w.Write(f.Data)
	}
	c.pad(len(f.Data))
}

// WriteInitramfs writes a gzip-compressed newc cpio archive holding dirs
// (empty directories) and files.
func WriteInitramfs(w io.Writer, dirs []string, files []File) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	c := &cpioWriter{w: zw, dirs: map[string]bool{}}
	for _, d := range dirs {
		c.dir(strings.Trim(d, "/"))
	}
	for _, f := range files {
		f.Path = strings.TrimPrefix(f.Path, "/")
		c.file(f)
	}
	c.header("TRAILER!!!", 0, 0)
	if c.err != nil {
		return c.err
	}
	return zw.Close()
}

// ReadInitramfs lists the regular files of an archive WriteInitramfs made
// (for tests and debugging).
func ReadInitramfs(r io.Reader) (map[string][]byte, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReader(zr)
	files := map[string][]byte{}
	var off int
	read := func(n int) ([]byte, error) {
		b := make([]byte, n)
		_, err := io.ReadFull(br, b)
		off += n
		return b, err
	}
	skipPad := func() error {
		if off%4 != 0 {
			_, err := read(4 - off%4)
			return err
		}
		return nil
	}
	for {
		hdr, err := read(110)
		if err != nil {
			return nil, fmt.Errorf("cpio header: %w", err)
		}
		if string(hdr[:6]) != "070701" {
			return nil, fmt.Errorf("bad cpio magic %q", hdr[:6])
		}
		var f [13]uint32
		for i := range f {
			if _, err := fmt.Sscanf(string(hdr[6+8*i:14+8*i]), "%08x", &f[i]); err != nil {
				return nil, err
			}
		}
		name, err := read(int(f[11]))
		if err != nil {
			return nil, err
		}
		if err := skipPad(); err != nil {
			return nil, err
		}
		n := strings.TrimRight(string(name), "\x00")
		if n == "TRAILER!!!" {
			return files, nil
		}
		data, err := read(int(f[6]))
		if err != nil {
			return nil, err
		}
		if err := skipPad(); err != nil {
			return nil, err
		}
		if f[1]&0o170000 == 0o100000 {
			files[n] = data
		}
	}
}

// ModuleFiles resolves the modules and their dependencies in the image
// (modprobe --show-depends against the unpacked package) and returns them
// decompressed, named /modules/NNN-name.ko so that lexical order is load
// order. Built-in modules are skipped.
func ModuleFiles(ctx context.Context, im *Image, modules []string) ([]File, error) {
	var files []File
	seen := map[string]bool{}
	for _, m := range modules {
		out, err := runTool(ctx, 30*time.Second, "", "modprobe", "-S", im.Release, "-d", im.Root, "--show-depends", m)
		if err != nil {
			return nil, fmt.Errorf("kernel %s: module %s: %w", im.Kernel.Name, m, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "insmod" {
				continue // "builtin X" or blank
			}
			ko := f[1]
			if seen[ko] {
				continue
			}
			seen[ko] = true
			data, err := readModule(ctx, ko)
			if err != nil {
				return nil, fmt.Errorf("kernel %s: module %s: %w", im.Kernel.Name, m, err)
			}
			base := filepath.Base(ko)
			base = base[:strings.Index(base, ".ko")]
			files = append(files, File{Path: fmt.Sprintf("modules/%03d-%s.ko", len(files), base), Mode: 0o644, Data: data})
		}
	}
	return files, nil
}

func readModule(ctx context.Context, ko string) ([]byte, error) {
	raw, err := os.ReadFile(ko)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasSuffix(ko, ".ko.xz"):
		return decompressAll(ctx, "xz", []string{"-dc"}, raw)
	case strings.HasSuffix(ko, ".ko.zst"):
		return decompressAll(ctx, "zstd", []string{"-dcq"}, raw)
	case strings.HasSuffix(ko, ".ko.gz"):
		return decompressAll(ctx, "gzip", []string{"-dc"}, raw)
	}
	return raw, nil
}

func decompressAll(ctx context.Context, tool string, args []string, raw []byte) ([]byte, error) {
	out, err := decompress(ctx, tool, args, raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tool, err)
	}
	return out, nil
}

// GuestConfig is what the guest init reads from /vm/config.json.
type GuestConfig struct {
	// Args is the command: Args[0] is a path inside the guest.
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"`
	Dir  string   `json:"dir,omitempty"`
	// TimeoutSec: the init kills the command after this long, prints the
	// kernel log tail and reports exit code 124. 0: no guest timeout
	// (the host's still applies).
	TimeoutSec int `json:"timeout_sec,omitempty"`
	// SwitchRoot, when set, is a block device (an ext4 Drive: /dev/vda
	// for the first) that the init mounts as the new root before it
	// executes Args there as PID 1 (e.g. /lib/systemd/systemd). The
	// guest then prints the markers itself: see SystemdTest.
	SwitchRoot string `json:"switch_root,omitempty"`
}

// sortedFiles orders files by path (stable archives for the same input).
func sortedFiles(files []File) []File {
	sort.SliceStable(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files
}
