// Command vmmatrix is make vmtest: for each kernel of the matrix it fetches
// the Debian kernel package (cached), runs the privileged dataplane tests
// and the vmtests/guest checks inside QEMU through go test -exec vmexec,
// and prints a kernel × test table with the attach modes used.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
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
	wd, _ := os.Getwd()
	root, err := vmtests.ModuleRoot(wd)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmmatrix:", err)
		return 2
	}
	var (
		kernels  = flag.String("kernels", "", "comma-separated kernels of the matrix (default: all)")
		pkgs     = flag.String("pkgs", "./dataplane/ ./vmtests/guest/", "packages to test in each VM")
		cache    = flag.String("cache", vmtests.DefaultCache(root), "kernel cache directory")
		perVM    = flag.Duration("timeout", 5*time.Minute, "go test -timeout inside each VM")
		runFlag  = flag.String("run", "", "go test -run pattern")
		verbose  = flag.Bool("v", false, "stream the go test output")
		binDir   = flag.String("bin", filepath.Join(root, "bin"), "where vmexec and vminit are built")
		deadline = flag.Duration("deadline", 9*time.Minute, "bound on the whole run")
	)
	flag.Parse()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "vmmatrix: "+format+"\n", args...) }

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *deadline)
	defer cancel()
	start := time.Now()

	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		logf("QEMU not found: apt-get install --no-install-recommends qemu-system-x86 (see README, Kernel matrix)")
		return 1
	}
	vmexec, vminit := filepath.Join(*binDir, "vmexec"), filepath.Join(*binDir, "vminit")
	if err := vmtests.BuildStatic(ctx, root, "github.com/peerd/peerd/vmtests/cmd/vmexec", vmexec); err != nil {
		logf("%v", err)
		return 1
	}
	if err := vmtests.BuildStatic(ctx, root, vmtests.InitPackage, vminit); err != nil {
		logf("%v", err)
		return 1
	}
	matrix := vmtests.Matrix
	if *kernels != "" {
		matrix = nil
		for _, n := range strings.Split(*kernels, ",") {
			k, err := vmtests.KernelByName(strings.TrimSpace(n))
			if err != nil {
				logf("%v", err)
				return 2
			}
			matrix = append(matrix, k)
		}
	}
	logDir := filepath.Join(*cache, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		logf("%v", err)
		return 1
	}

	var runs []vmtests.KernelRun
	for _, k := range matrix {
		kr := vmtests.KernelRun{Kernel: k}
		im, err := vmtests.Ensure(ctx, k, *cache, logf)
		if err != nil {
			kr.Err = err
			logf("kernel %s: %v", k.Name, err)
			runs = append(runs, kr)
			continue
		}
		kr.Package = im.Package
		logPath := filepath.Join(logDir, "vmtest-"+k.Name+".log")
		logf("kernel %s (%s): go test in QEMU, log in %s", k.Name, im.Package, logPath)
		out, err := goTest(ctx, root, k, vmexec, *cache, *perVM, *runFlag, strings.Fields(*pkgs), logPath, *verbose)
		if rep, perr := vmtests.ParseGoTest(bytes.NewReader(out)); perr == nil {
			kr.Report = rep
		}
		if err != nil && (kr.Report == nil || len(kr.Report.Packages) == 0) {
			kr.Err = fmt.Errorf("go test: %v (see %s)", err, logPath)
		}
		runs = append(runs, kr)
	}

	fmt.Println()
	vmtests.PrintTable(os.Stdout, runs)
	failed := false
	for _, r := range runs {
		if !r.Failed() {
			continue
		}
		failed = true
		if r.Report == nil {
			continue
		}
		for _, tr := range r.Report.Tests {
			if tr.Status != "FAIL" {
				continue
			}
			fmt.Printf("\n--- kernel %s: %s.%s FAILED:\n", r.Kernel.Name, tr.Package, tr.Name)
			for _, l := range tr.Output {
				fmt.Println("  " + l)
			}
		}
	}
	fmt.Printf("\nmake vmtest: %d kernel(s) in %.0fs: ", len(runs), time.Since(start).Seconds())
	if failed {
		fmt.Println("FAIL")
		return 1
	}
	fmt.Println("PASS")
	return 0
}

func goTest(ctx context.Context, root string, k vmtests.Kernel, vmexec, cache string, timeout time.Duration, run string, pkgs []string, logPath string, verbose bool) ([]byte, error) {
	args := []string{"test", "-count=1", "-v", "-p", "1", "-timeout", timeout.String(),
		"-exec", fmt.Sprintf("%s -kernel %s -cache %s -nofetch", vmexec, k.Name, cache)}
	if run != "" {
		args = append(args, "-run", run)
	}
	args = append(args, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.WaitDelay = 15 * time.Second
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	var w io.Writer = io.MultiWriter(&buf, f)
	if verbose {
		w = io.MultiWriter(w, os.Stdout)
	} else {
		w = io.MultiWriter(w, &progress{})
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Run()
	return buf.Bytes(), err
}

// progress echoes the top-level test results and vmexec's lines, so that
// a long run shows it is alive.
type progress struct{ partial []byte }

func (p *progress) Write(b []byte) (int, error) {
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := string(p.partial[:i])
		p.partial = p.partial[i+1:]
		if strings.HasPrefix(line, "--- ") || strings.HasPrefix(line, "vmexec: ") || strings.HasPrefix(line, "ok ") || strings.HasPrefix(line, "FAIL\t") {
			fmt.Fprintln(os.Stderr, "  "+line)
		}
	}
}
