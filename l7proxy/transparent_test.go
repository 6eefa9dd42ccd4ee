package l7proxy

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerd/peerd/catalog/state"
)

const podUID = "3f2c9a7e-1b4d-4e8a-9c0f-5d6e7f8a9b0c"

// fakeCgroups is a cgroup tree by path: ids for the proxy's CgroupID and
// CgroupPath hooks.
type fakeCgroups map[string]uint64

func (f fakeCgroups) id(path string) (uint64, error) {
	if id, ok := f[filepath.Clean(path)]; ok {
		return id, nil
	}
	return 0, fmt.Errorf("cgroup id of %s: %w", path, fs.ErrNotExist)
}

func (f fakeCgroups) path(id uint64) (string, error) {
	for p, i := range f {
		if i == id {
			return p, nil
		}
	}
	return "", fmt.Errorf("cgroup id %d: not found", id)
}

func cgroupProxy(t *testing.T, cg fakeCgroups, root string, withPath bool, svcs ...*state.Service) *Proxy {
	t.Helper()
	st, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	for i, svc := range svcs {
		if err := st.Register(uint64(1+i), &state.RegisterRequest{Node: &state.Node{Node: "n", Address: "127.0.0.1"}, Service: svc}); err != nil {
			t.Fatal(err)
		}
	}
	// A service of another node never names a caller of this one.
	if err := st.Register(uint64(100), &state.RegisterRequest{Node: &state.Node{Node: "other", Address: "127.0.0.2"},
		Service: &state.Service{ID: "x", Service: "elsewhere", Port: 1, Meta: map[string]string{CgroupMeta: root + "/kubepods/burstable", PodUIDMeta: podUID}}}); err != nil {
		t.Fatal(err)
	}
	p := testProxy(t)
	p.cfg.View = func() *state.Store { return st }
	p.cfg.CgroupID = cg.id
	if withPath {
		p.cfg.CgroupPath, p.cfg.CgroupRoot = cg.path, root
	}
	return p
}

func svc(id, name string, meta ...string) *state.Service {
	m := map[string]string{}
	for i := 0; i+1 < len(meta); i += 2 {
		m[meta[i]] = meta[i+1]
	}
	return &state.Service{ID: id, Service: name, Port: 80, Meta: m}
}

// TestServiceOfCgroupPrecedence: exact cgroup, then the nearest claimed
// ancestor below the captured root, then the pod UID.
func TestServiceOfCgroupPrecedence(t *testing.T) {
	const root = "/cg/kubepods.slice"
	under := strings.ReplaceAll(podUID, "-", "_")
	pod := root + "/kubepods-burstable.slice/kubepods-burstable-pod" + under + ".slice"
	cg := fakeCgroups{
		"/cg":                                  1,
		root:                                   2,
		root + "/kubepods-burstable.slice":     3,
		pod:                                    4,
		pod + "/cri-containerd-a.scope":        5,
		pod + "/cri-containerd-b.scope":        6,
		pod + "/cri-containerd-b.scope/nested": 7,
		root + "/kubepods-besteffort.slice":    8,
		root + "/kubepods-besteffort.slice/kubepods-besteffort-pod11111111_2222_3333_4444_555555555555.slice/c.scope": 9,
		root + "/lonely.scope": 10,
	}
	tests := []struct {
		name     string
		svcs     []*state.Service
		withPath bool
		want     map[uint64]string // cgroup id -> service; "" = none
	}{
		{
			name: "exact only without a path resolver",
			svcs: []*state.Service{svc("web-1", "web", CgroupMeta, pod), svc("api-1", "api", CgroupMeta, pod+"/cri-containerd-a.scope/"), svc("p-1", "podsvc", PodUIDMeta, podUID)},
			want: map[uint64]string{4: "web", 5: "api", 6: "", 7: ""},
		},
		{
			name:     "exact beats ancestor beats pod UID",
			svcs:     []*state.Service{svc("web-1", "web", CgroupMeta, pod), svc("api-1", "api", CgroupMeta, pod+"/cri-containerd-a.scope"), svc("p-1", "podsvc", PodUIDMeta, podUID)},
			withPath: true,
			want:     map[uint64]string{4: "web", 5: "api", 6: "web", 7: "web", 9: "", 10: ""},
		},
		{
			name:     "the nearest ancestor",
			svcs:     []*state.Service{svc("qos-1", "qos", CgroupMeta, root+"/kubepods-burstable.slice"), svc("b-1", "b", CgroupMeta, pod+"/cri-containerd-b.scope")},
			withPath: true,
			want:     map[uint64]string{7: "b", 6: "b", 5: "qos", 4: "qos", 3: "qos", 9: ""},
		},
		{
			name:     "pod UID, any case, any container",
			svcs:     []*state.Service{svc("p-1", "podsvc", PodUIDMeta, strings.ToUpper(podUID)), svc("q-1", "other", PodUIDMeta, "11111111-2222-3333-4444-555555555555")},
			withPath: true,
			want:     map[uint64]string{4: "podsvc", 5: "podsvc", 7: "podsvc", 9: "other", 3: "", 2: "", 10: ""},
		},
		{
			name: "the captured root covers only itself",
			svcs: []*state.Service{svc("all-1", "all", CgroupMeta, root), svc("up-1", "up", CgroupMeta, "/cg")},
			// /cg is above the root: it matches only exactly, too.
			withPath: true,
			want:     map[uint64]string{2: "all", 1: "up", 3: "", 5: "", 10: ""},
		},
		{
			name:     "a bad pod UID claims nothing",
			svcs:     []*state.Service{svc("p-1", "podsvc", PodUIDMeta, under)},
			withPath: true,
			want:     map[uint64]string{5: ""},
		},
		{
			name:     "unknown cgroup id",
			svcs:     []*state.Service{svc("web-1", "web", CgroupMeta, pod)},
			withPath: true,
			want:     map[uint64]string{999: ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := cgroupProxy(t, cg, root, tt.withPath, tt.svcs...)
			for id, want := range tt.want {
				got, ok := p.ServiceOfCgroup(id)
				if got != want || ok != (want != "") {
					t.Errorf("cgroup %d: got %q, %v; want %q", id, got, ok, want)
				}
			}
		})
	}
	t.Run("no CgroupID resolver", func(t *testing.T) {
		p := cgroupProxy(t, cg, root, true, svc("web-1", "web", CgroupMeta, pod))
		p.cfg.CgroupID = nil
		if got, ok := p.ServiceOfCgroup(4); ok {
			t.Errorf("got %q without a resolver", got)
		}
	})
}

func TestConfigCgroupResolver(t *testing.T) {
	cg := fakeCgroups{}
	for _, c := range []Config{
		{CgroupPath: cg.path, CgroupID: cg.id},
		{CgroupPath: cg.path, CgroupID: cg.id, CgroupRoot: "kubepods"},
		{CgroupPath: cg.path, CgroupRoot: "/cg"},
	} {
		err := c.validate()
		if err == nil || !strings.Contains(err.Error(), "CgroupPath") {
			t.Errorf("validate(%+v) = %v, want a refusal naming CgroupPath", c, err)
		}
	}
}
