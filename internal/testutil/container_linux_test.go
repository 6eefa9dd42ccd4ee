package testutil

import (
	"bytes"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

func TestStartContainer(t *testing.T) {
	RequireRoot(t, "a cgroup, a network namespace and a veth")
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	if !InNewNetns(t) {
		return
	}
	cg := NewCgroup(t)
	cmd := exec.Command("sh", "-c", "read go; ip -br addr; ip route; ip -6 route; cat /proc/self/cgroup")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := StartContainer(t, cmd, ContainerOptions{Cgroup: cg,
		Addr: netip.MustParsePrefix("10.77.0.2/24"), Gateway: netip.MustParseAddr("10.77.0.1"),
		Addr6: netip.MustParsePrefix("fd77::2/64"), Gateway6: netip.MustParseAddr("fd77::1")})
	if c.HostVeth == "" {
		t.Fatal("no host veth")
	}
	in.Write([]byte("go\n"))
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{"10.77.0.2/24", "fd77::2/64", "default via 10.77.0.1", "default via fd77::1", "lo               UNKNOWN        127.0.0.1/8", strings.TrimPrefix(cg, Cgroup2Root())} {
		if !strings.Contains(got, want) {
			t.Errorf("container lacks %q:\n%s", want, got)
		}
	}
}
