// Command vmexec runs a test binary inside a QEMU VM booted with one of
// the matrix's Debian kernels. It is a go test -exec wrapper:
//
//	go build -o bin/ ./vmtests/cmd/vmexec ./vmtests/cmd/vminit   # vminit with CGO_ENABLED=0
//	go test -exec "$(pwd)/bin/vmexec -kernel 6.12" -v ./dataplane/
//
// The test binary, the guest init and the kernel's modules go into an
// initramfs; the guest runs the binary as root with proc, sysfs, bpffs and
// cgroup2 mounted, and vmexec exits with its exit code. The kernel package
// is fetched with apt-get download into the cache (.vmcache at the module
// root) the first time.
package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/peerd/peerd/vmtests"
)

func main() {
	os.Exit(run())
}

func run() int {
	defKernel := os.Getenv("PEERD_VMTEST_KERNEL")
	if defKernel == "" {
		defKernel = "6.12"
	}
	wd, _ := os.Getwd()
	var (
		kernel  = flag.String("kernel", defKernel, "kernel of the matrix to boot ($PEERD_VMTEST_KERNEL)")
		cache   = flag.String("cache", vmtests.DefaultCache(wd), "kernel cache directory ($PEERD_VMCACHE)")
		initBin = flag.String("init", "", "static guest init binary (default: vminit beside vmexec, else built into the cache)")
		timeout = flag.Duration("timeout", 0, "bound on the whole VM (default: the test's -test.timeout plus 2m, else 12m)")
		modules = flag.String("modules", strings.Join(vmtests.DefaultModules, ","), "kernel modules to load in the guest (comma-separated; dependencies are added)")
		noFetch = flag.Bool("nofetch", false, "fail instead of fetching a kernel that is not cached")
		mem     = flag.Int("mem", 1024, "guest memory in MiB")
		cpus    = flag.Int("cpus", 1, "guest CPUs (1: two vCPUs under TCG made the 6.12 guest oops now and then)")
		accel   = flag.String("accel", envOr("PEERD_VMTEST_ACCEL", "tcg"), "QEMU accelerator (tcg; kvm cannot run stock kernels on these hosts)")
		envs    = flag.String("env", "", "extra NAME=VALUE variables for the guest command (comma-separated)")
	)
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: vmexec [flags] TEST-BINARY [ARGS...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 1 {
		flag.Usage()
		return 2
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "vmexec: "+format+"\n", args...) }
	fail := func(format string, args ...any) int {
		logf(format, args...)
		return vmtests.ExitNoMarker
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGQUIT)
	defer stop()

	k, err := vmtests.KernelByName(*kernel)
	if err != nil {
		return fail("%v", err)
	}
	var im *vmtests.Image
	if *noFetch {
		im, err = vmtests.Cached(k, *cache)
	} else {
		im, err = vmtests.Ensure(ctx, k, *cache, logf)
	}
	if err != nil {
		return fail("%v", err)
	}
	initPath, err := findInit(ctx, *initBin, *cache)
	if err != nil {
		return fail("%v", err)
	}

	bin, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		return fail("test binary: %v", err)
	}
	guestBin := "/bin/" + filepath.Base(flag.Arg(0))
	files := []vmtests.File{{Path: guestBin, Mode: 0o755, Data: bin}}
	libs, err := vmtests.SharedLibs(flag.Arg(0))
	if err != nil {
		return fail("test binary: %v", err)
	}
	files = append(files, libs...)
	td, err := testdata(wd)
	if err != nil {
		return fail("%v", err)
	}
	files = append(files, td...)

	testTimeout := testFlagDuration(flag.Args()[1:], "timeout")
	vmTimeout := *timeout
	if vmTimeout == 0 {
		vmTimeout = 12 * time.Minute
		if testTimeout > 0 {
			vmTimeout = testTimeout + 2*time.Minute
		}
	}
	// The init's own timeout comes first, so that it can print the
	// kernel log; the host's is the backstop for a hung kernel.
	guestTimeout := vmTimeout - 30*time.Second
	if guestTimeout < 10*time.Second {
		guestTimeout = vmTimeout * 2 / 3
	}
	guestEnv := passEnv()
	if *envs != "" {
		guestEnv = append(guestEnv, strings.Split(*envs, ",")...)
	}
	vm := vmtests.VM{
		Image:   im,
		Init:    initPath,
		Modules: splitList(*modules),
		Files:   files,
		Guest: vmtests.GuestConfig{
			Args:       append([]string{guestBin}, flag.Args()[1:]...),
			Env:        guestEnv,
			Dir:        "/pkg",
			TimeoutSec: int(guestTimeout / time.Second),
		},
		Timeout:  vmTimeout,
		Accel:    *accel,
		MemoryMB: *mem,
		CPUs:     *cpus,
		Output:   os.Stdout,
		Log:      os.Stderr,
	}
	res, err := vmtests.Run(ctx, vm)
	if res != nil {
		logf("kernel %s (%s, %s): boot %.1fs (guest uptime at init %ss), total %.1fs, exit %d",
			k.Name, im.Package, im.Release, res.Boot.Seconds(), res.GuestUptime, res.Total.Seconds(), res.ExitCode)
	}
	if err != nil {
		logf("%v", err)
		if res != nil {
			return res.ExitCode
		}
		return vmtests.ExitNoMarker
	}
	return res.ExitCode
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	if out == nil {
		out = []string{}
	}
	return out
}

// passEnv forwards the variables tests read (PEERD_*) and the Go runtime's.
func passEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if (strings.HasPrefix(name, "PEERD_") && name != "PEERD_VMCACHE" && name != "PEERD_VMTEST_KERNEL") ||
			name == "GODEBUG" || name == "GOTRACEBACK" || name == "GOMAXPROCS" {
			out = append(out, kv)
		}
	}
	return out
}

// testFlagDuration reads -test.NAME=DURATION from the test binary's args.
func testFlagDuration(args []string, name string) time.Duration {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, "test."+name+"="); ok {
			d, _ := time.ParseDuration(v)
			return d
		}
		if a == "test."+name && i+1 < len(args) {
			d, _ := time.ParseDuration(args[i+1])
			return d
		}
	}
	return 0
}

// testdata copies the package's testdata directory (go test runs the
// binary in the package directory) to /pkg/testdata in the guest.
func testdata(dir string) ([]vmtests.File, error) {
	root := filepath.Join(dir, "testdata")
	if _, err := os.Stat(root); err != nil {
		return nil, nil
	}
	var files []vmtests.File
	var total int
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if total += len(b); total > 64<<20 {
			return fmt.Errorf("%s holds more than 64 MiB: too big for the initramfs", root)
		}
		rel, _ := filepath.Rel(dir, p)
		info, _ := d.Info()
		files = append(files, vmtests.File{Path: "pkg/" + filepath.ToSlash(rel), Mode: info.Mode(), Data: b})
		return nil
	})
	return files, err
}

func findInit(ctx context.Context, flagPath, cache string) (string, error) {
	if flagPath != "" {
		return flagPath, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "vminit")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	out := filepath.Join(cache, "vminit")
	wd, _ := os.Getwd()
	root, err := vmtests.ModuleRoot(wd)
	if err != nil {
		return "", fmt.Errorf("no guest init: pass -init or build vminit beside vmexec (%v)", err)
	}
	if err := vmtests.BuildStatic(ctx, root, vmtests.InitPackage, out); err != nil {
		return "", fmt.Errorf("no guest init beside vmexec, and building one failed: %w", err)
	}
	return out, nil
}
