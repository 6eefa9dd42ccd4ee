package cgroupfs

import (
	"errors"
	"strings"
	"testing"
)

const uid = "3f2c9a7e-1b4d-4e8a-9c0f-5d6e7f8a9b0c"

func TestPodUID(t *testing.T) {
	under := strings.ReplaceAll(uid, "-", "_")
	tests := []struct {
		name, path, want string
	}{
		{"systemd burstable container", "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + under + ".slice/cri-containerd-abc.scope", uid},
		{"systemd besteffort pod", "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + under + ".slice", uid},
		{"systemd guaranteed", "/sys/fs/cgroup/kubepods.slice/kubepods-pod" + under + ".slice/crio-abc.scope", uid},
		{"systemd kubelet cgroup root", "/sys/fs/cgroup/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod" + under + ".slice/x.scope", uid},
		{"cgroupfs burstable container", "/sys/fs/cgroup/kubepods/burstable/pod" + uid + "/0123456789abcdef", uid},
		{"cgroupfs guaranteed pod", "/sys/fs/cgroup/kubepods/pod" + uid, uid},
		{"cgroupfs relative", "kubepods/besteffort/pod" + uid + "/ctr", uid},
		{"upper case", "/kubepods/pod" + strings.ToUpper(uid) + "/c", uid},
		{"nested kubelet: the deepest pod", "/kubepods/pod" + uid + "/c/kubepods/pod11111111-2222-3333-4444-555555555555/c", "11111111-2222-3333-4444-555555555555"},
		{"podman container", "/sys/fs/cgroup/machine.slice/libpod-0123abcd.scope", ""},
		{"systemd unit", "/sys/fs/cgroup/system.slice/web.service", ""},
		{"pod dir outside kubepods", "/sys/fs/cgroup/mesh/pod" + uid + "/ctr", ""},
		{"systemd dashes in the uid", "/kubepods.slice/kubepods-pod" + uid + ".slice", ""},
		{"cgroupfs underscores", "/kubepods/pod" + under, ""},
		{"not a uuid", "/kubepods/burstable/pod1234/c", ""},
		{"kubepods slice alone", "/sys/fs/cgroup/kubepods.slice", ""},
		{"pod slice without kubepods", "/sys/fs/cgroup/x.slice/x-pod" + under + ".slice", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := PodUID(tt.path)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("PodUID(%q) = %q, %v; want %q", tt.path, got, ok, tt.want)
			}
		})
	}
}

func TestParseUID(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{uid, uid},
		{strings.ToUpper(uid), uid},
		{"3f2c9a7e1b4d4e8a9c0f5d6e7f8a9b0c", ""},
		{"3f2c9a7e-1b4d-4e8a-9c0f-5d6e7f8a9b0", ""},
		{"3f2c9a7e-1b4d-4e8a-9c0f-5d6e7f8a9b0g", ""},
		{"3f2c9a7e_1b4d_4e8a_9c0f_5d6e7f8a9b0c", ""},
		{"", ""},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseUID(tt.in)
			if tt.want == "" {
				if !errors.Is(err, ErrNotUUID) || !strings.Contains(err.Error(), tt.in) {
					t.Errorf("got %q, %v; want an error matching ErrNotUUID naming the value", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestWithin(t *testing.T) {
	for _, tt := range []struct {
		root, path string
		want       bool
	}{
		{"/sys/fs/cgroup/kubepods", "/sys/fs/cgroup/kubepods", true},
		{"/sys/fs/cgroup/kubepods", "/sys/fs/cgroup/kubepods/", true},
		{"/sys/fs/cgroup/kubepods", "/sys/fs/cgroup/kubepods/pod1/c", true},
		{"/sys/fs/cgroup/kubepods/", "/sys/fs/cgroup/kubepods/pod1", true},
		{"/sys/fs/cgroup/kubepods", "/sys/fs/cgroup/kubepods.slice", false},
		{"/sys/fs/cgroup/kubepods", "/sys/fs/cgroup", false},
		{"/sys/fs/cgroup/kubepods", "/sys/fs/cgroup/kubepods/../system.slice", false},
		{"/sys/fs/cgroup/kubepods", "kubepods/pod1", false},
		{"/", "/anything", true},
	} {
		if got := Within(tt.root, tt.path); got != tt.want {
			t.Errorf("Within(%q, %q) = %v, want %v", tt.root, tt.path, got, tt.want)
		}
	}
}

// FuzzPodUID: PodUID never panics, and what it returns is a lower-case
// UUID that the path spells (with dashes or underscores); a UUID put in
// either driver's layout is found.
func FuzzPodUID(f *testing.F) {
	f.Add("/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"+strings.ReplaceAll(uid, "-", "_")+".slice/cri-containerd-a.scope", uid)
	f.Add("/sys/fs/cgroup/kubepods/burstable/pod"+uid+"/c", uid)
	f.Add("/kubepods/pod/../pod-x.slice", "x")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, path, maybeUID string) {
		got, ok := PodUID(path)
		if ok != (got != "") {
			t.Fatalf("PodUID(%q) = %q, %v", path, got, ok)
		}
		if ok {
			if u, err := ParseUID(got); err != nil || u != got {
				t.Fatalf("PodUID(%q) = %q, not a lower-case UUID (%v)", path, got, err)
			}
			lower := strings.ToLower(path)
			if !strings.Contains(lower, got) && !strings.Contains(lower, strings.ReplaceAll(got, "-", "_")) {
				t.Fatalf("PodUID(%q) = %q, which the path does not contain", path, got)
			}
		}
		u, err := ParseUID(maybeUID)
		if err != nil {
			return
		}
		sd := "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + strings.ReplaceAll(maybeUID, "-", "_") + ".slice/c.scope"
		cf := "/sys/fs/cgroup/kubepods/besteffort/pod" + maybeUID + "/c"
		for _, p := range []string{sd, cf} {
			if got, ok := PodUID(p); !ok || got != u {
				t.Fatalf("PodUID(%q) = %q, %v; want %q", p, got, ok, u)
			}
		}
	})
}
