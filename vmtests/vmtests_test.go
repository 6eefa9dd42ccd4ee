package vmtests

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as the guest command of the VM tests: with
// VMTESTS_GUEST_ACTION set it exits with that code, or hangs.
func TestMain(m *testing.M) {
	if action := os.Getenv("VMTESTS_GUEST_ACTION"); action != "" {
		if action == "hang" {
			os.Stdout.WriteString("guest: hanging\n")
			for {
				time.Sleep(time.Hour)
			}
		}
		code, _ := strconv.Atoi(action)
		os.Stdout.WriteString("guest: exiting with " + action + "\n")
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func TestInitramfsRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	files := []File{
		{Path: "init", Mode: 0o755, Data: []byte("init")},
		{Path: "modules/000-veth.ko", Mode: 0o644, Data: []byte("abcde")},
		{Path: "a/b/c", Mode: 0o644, Data: nil},
	}
	if err := WriteInitramfs(&buf, []string{"dev", "proc"}, files); err != nil {
		t.Fatal(err)
	}
	got, err := ReadInitramfs(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got["init"]) != "init" || string(got["modules/000-veth.ko"]) != "abcde" || len(got["a/b/c"]) != 0 {
		t.Fatalf("read back %v", got)
	}
}

const sampleOutput = `=== RUN   TestA
    a_test.go:10: capture status: {Enabled:true Loaded:true AttachMode:cgroup-link}
--- PASS: TestA (0.10s)
=== RUN   TestTC
=== RUN   TestTC/tcx
    tc_test.go:97: kernel without TCX: tcx not supported
=== RUN   TestTC/clsact
    tc_test.go:159: mode clsact: {RxBytes:1}
--- PASS: TestTC (0.2s)
    --- SKIP: TestTC/tcx (0.1s)
    --- PASS: TestTC/clsact (0.1s)
=== RUN   TestB
    b_test.go:3: boom
--- FAIL: TestB (0.00s)
FAIL
vmexec: kernel 6.1 (linux-image-6.1.0-56-amd64, 6.1.0-56-amd64): boot 2.5s (guest uptime at init 2.2s), total 6.6s, exit 1
FAIL	github.com/peerd/peerd/dataplane	7.4s
=== RUN   TestAttachModes
    guest_test.go:9: ATTACH-MODES capture=cgroup-link tc=clsact
--- PASS: TestAttachModes (0.5s)
PASS
ok  	github.com/peerd/peerd/vmtests/guest	5.7s
`

func TestParseGoTest(t *testing.T) {
	rep, err := ParseGoTest(strings.NewReader(sampleOutput))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"dataplane.TestA": "PASS cgroup-link", "dataplane.TestTC/tcx": "SKIP ", "dataplane.TestTC/clsact": "PASS clsact",
		"dataplane.TestTC": "PASS ", "dataplane.TestB": "FAIL ", "guest.TestAttachModes": "PASS ",
	}
	if len(rep.Tests) != len(want) {
		t.Fatalf("%d tests, want %d: %+v", len(rep.Tests), len(want), rep.Tests)
	}
	for _, tr := range rep.Tests {
		if got := tr.Status + " " + strings.Join(tr.Modes, ","); got != want[tr.Package+"."+tr.Name] {
			t.Errorf("%s.%s: %q, want %q", tr.Package, tr.Name, got, want[tr.Package+"."+tr.Name])
		}
		if tr.Name == "TestB" && (len(tr.Output) == 0 || !strings.Contains(tr.Output[0], "boom")) {
			t.Errorf("TestB output %q", tr.Output)
		}
	}
	if rep.Packages["github.com/peerd/peerd/dataplane"] != "FAIL" || rep.Packages["github.com/peerd/peerd/vmtests/guest"] != "ok" {
		t.Errorf("packages %v", rep.Packages)
	}
	if rep.AttachModes != "capture=cgroup-link tc=clsact" || len(rep.Boot) != 1 || rep.Boot[0] != "2.5s" {
		t.Errorf("attach modes %q, boot %v", rep.AttachModes, rep.Boot)
	}
	var out bytes.Buffer
	PrintTable(&out, []KernelRun{{Kernel: Matrix[0], Package: "linux-image-x", Report: rep}})
	if !strings.Contains(out.String(), "dataplane.TestTC/tcx") || !strings.Contains(out.String(), "skip") {
		t.Errorf("table:\n%s", out.String())
	}
}

func TestQEMUMissing(t *testing.T) {
	_, err := Run(context.Background(), VM{QEMU: "/nonexistent/qemu-system-x86_64", Image: &Image{}})
	if err == nil || !strings.Contains(err.Error(), "QEMU not found") {
		t.Fatalf("err = %v, want QEMU not found", err)
	}
}

func TestUnknownKernelPackage(t *testing.T) {
	if _, err := KernelByName("4.19"); err == nil {
		t.Fatal("unknown kernel accepted")
	}
	_, err := Ensure(context.Background(), Kernel{Name: "bogus", Meta: "peerd-no-such-package-xyz"}, t.TempDir(), t.Logf)
	if err == nil || !strings.Contains(err.Error(), "resolve kernel bogus") {
		t.Fatalf("err = %v, want a resolve error", err)
	}
}

// vmSetup returns a cached kernel and a guest init, or skips.
func vmSetup(t *testing.T) (*Image, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots QEMU: not with -short")
	}
	if _, err := Run(context.Background(), VM{Image: &Image{}, QEMU: "qemu-system-x86_64", Init: "/nonexistent"}); err != nil && strings.Contains(err.Error(), "QEMU not found") {
		t.Skip("QEMU is not installed (apt-get install --no-install-recommends qemu-system-x86)")
	}
	wd, _ := os.Getwd()
	cache := DefaultCache(wd)
	var im *Image
	for _, k := range Matrix {
		if c, err := Cached(k, cache); err == nil {
			im = c
			break
		}
	}
	if im == nil {
		t.Skipf("no kernel cached in %s: make vmtest fetches them", cache)
	}
	root, err := ModuleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	initBin := filepath.Join(t.TempDir(), "vminit")
	if err := BuildStatic(context.Background(), root, InitPackage, initBin); err != nil {
		t.Fatal(err)
	}
	return im, initBin
}

func guestVM(t *testing.T, im *Image, initBin, action string, timeout time.Duration) VM {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	libs, err := SharedLibs(exe)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	return VM{
		Image: im, Init: initBin, Modules: []string{},
		Files:   append([]File{{Path: "bin/guest", Mode: 0o755, Data: bin}}, libs...),
		Guest:   GuestConfig{Args: []string{"/bin/guest"}, Env: []string{"VMTESTS_GUEST_ACTION=" + action}},
		Timeout: timeout, CPUs: 1, Output: &out, Log: &out,
	}
}

func TestGuestExitCodes(t *testing.T) {
	im, initBin := vmSetup(t)
	t.Parallel()
	for _, code := range []int{0, 3} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			vm := guestVM(t, im, initBin, strconv.Itoa(code), 2*time.Minute)
			res, err := Run(context.Background(), vm)
			if err != nil {
				t.Fatal(err)
			}
			out := vm.Output.(*bytes.Buffer).String()
			if res.ExitCode != code || !strings.Contains(out, "guest: exiting with "+strconv.Itoa(code)) {
				t.Fatalf("exit %d, output %q; want %d", res.ExitCode, out, code)
			}
			t.Logf("kernel %s: boot %.1fs, total %.1fs", im.Kernel.Name, res.Boot.Seconds(), res.Total.Seconds())
		})
	}
}

func TestGuestHangIsStopped(t *testing.T) {
	im, initBin := vmSetup(t)
	t.Parallel()
	// Long enough for the slowest boot of the matrix under load (5.10
	// took up to 15 s on the shared CI machine), so the timeout hits the
	// hanging guest, not the boot.
	const timeout = 40 * time.Second
	vm := guestVM(t, im, initBin, "hang", timeout)
	start := time.Now()
	res, err := Run(context.Background(), vm)
	elapsed := time.Since(start)
	if err == nil || res == nil || !res.TimedOut || res.ExitCode != ExitTimeout {
		t.Fatalf("err %v: want a timeout", err)
	}
	if !strings.Contains(err.Error(), "timeout") || !strings.Contains(err.Error(), "guest: hanging") {
		t.Errorf("error does not say what happened: %v", err)
	}
	if elapsed > timeout+15*time.Second {
		t.Errorf("stopped after %s, timeout %s", elapsed, timeout)
	}
}

func TestKernelThatDoesNotBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts QEMU: not with -short")
	}
	if _, err := Run(context.Background(), VM{Image: &Image{}, Init: "/nonexistent"}); err != nil && strings.Contains(err.Error(), "QEMU not found") {
		t.Skip("QEMU is not installed")
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(bad, bytes.Repeat([]byte("not a kernel "), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	initBin := filepath.Join(dir, "init")
	if err := os.WriteFile(initBin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	im := &Image{Kernel: Kernel{Name: "bad"}, Package: "none", Vmlinuz: bad}
	start := time.Now()
	res, err := Run(context.Background(), VM{Image: im, Init: initBin, Modules: []string{}, Timeout: 30 * time.Second,
		Guest: GuestConfig{Args: []string{"/bin/true"}}})
	if err == nil || !strings.Contains(err.Error(), "did not boot") {
		t.Fatalf("err = %v, want did not boot", err)
	}
	if res.ExitCode == 0 || time.Since(start) > 40*time.Second {
		t.Errorf("exit %d after %s", res.ExitCode, time.Since(start))
	}
	t.Log(err)
}
