package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/peerd/peerd/l7proxy"
)

// The claims on captured callers are checked on registration: a
// peerd-cgroup below the node's captured cgroup, a peerd-pod-uid that is a
// UUID (400 otherwise); one service per pod UID on a node (409 naming the
// owner), shared by the instances of one service; service:write to claim.
func TestCallerClaims(t *testing.T) {
	const root = "/sys/fs/cgroup/kubepods.slice"
	const uid = "3f2c9a7e-1b4d-4e8a-9c0f-5d6e7f8a9b0c"
	n := startPeeringNodeWith(t, "n", "dc1", true, func(c *Config) {
		c.ACL = testResolver{rules: map[string]string{
			"webw":  `service "web" { policy = "write" }`,
			"webr":  `service "web" { policy = "read" }`,
			"billw": `service "billing" { policy = "write" }`,
		}}
		c.CapturedCgroup = root
	})
	reg := func(token, name, id, key, value string) answer {
		return doToken(t, "PUT", n.url+"/v1/agent/service/register", token,
			`{"Name": "`+name+`", "ID": "`+id+`", "Port": 80, "Meta": {"`+key+`": "`+value+`"}}`)
	}
	tests := []struct {
		name, token, svc, id, key, value string
		code                             int
		body                             string
	}{
		{"pod UID", "webw", "web", "web-a", l7proxy.PodUIDMeta, uid, 200, ""},
		{"the same pod, another instance, upper case", "webw", "web", "web-b", l7proxy.PodUIDMeta, strings.ToUpper(uid), 200, ""},
		{"another service, same pod", "billw", "billing", "billing-1", l7proxy.PodUIDMeta, uid, http.StatusConflict,
			`claims pod ` + uid + ` (meta peerd-pod-uid), which service "web" (ID "web-a") on this node already claims`},
		{"not a UUID", "billw", "billing", "billing-1", l7proxy.PodUIDMeta, "web-0", http.StatusBadRequest,
			`meta peerd-pod-uid: "web-0": not a UUID`},
		{"systemd spelling of a UID", "billw", "billing", "billing-1", l7proxy.PodUIDMeta, strings.ReplaceAll(uid, "-", "_"), http.StatusBadRequest, "metadata.uid"},
		{"pod claim without service:write", "webr", "web", "web-c", l7proxy.PodUIDMeta, uid, http.StatusForbidden, ""},
		{"anonymous pod claim", "", "web", "web-c", l7proxy.PodUIDMeta, uid, http.StatusForbidden, ""},
		{"cgroup below the captured one", "billw", "billing", "billing-1", l7proxy.CgroupMeta, root + "/kubepods-burstable.slice/x.slice", 200, ""},
		{"the captured cgroup itself", "billw", "billing", "billing-2", l7proxy.CgroupMeta, root, 200, ""},
		{"cgroup outside the captured one", "billw", "billing", "billing-3", l7proxy.CgroupMeta, "/sys/fs/cgroup/system.slice", http.StatusBadRequest,
			`is not under this node's captured cgroup "/sys/fs/cgroup/kubepods.slice" (-cgroup-path)`},
		{"cgroup escaping with ..", "billw", "billing", "billing-3", l7proxy.CgroupMeta, root + "/../system.slice", http.StatusBadRequest, "not under"},
		{"relative cgroup", "billw", "billing", "billing-3", l7proxy.CgroupMeta, "kubepods.slice/x", http.StatusBadRequest, "want the absolute path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := reg(tt.token, tt.svc, tt.id, tt.key, tt.value)
			if got.code != tt.code || !strings.Contains(got.body, tt.body) {
				t.Errorf("got %d %q, want %d containing %q", got.code, got.body, tt.code, tt.body)
			}
		})
	}
	// The catalog's register for this node follows the same rules; for
	// another node only the form is checked (its captured cgroup is its
	// own).
	for _, c := range []struct {
		node, meta string
		code       int
	}{
		{"n", `"` + l7proxy.CgroupMeta + `": "/sys/fs/cgroup/system.slice"`, http.StatusBadRequest},
		{"n", `"` + l7proxy.PodUIDMeta + `": "nope"`, http.StatusBadRequest},
		{"other", `"` + l7proxy.CgroupMeta + `": "/sys/fs/cgroup/system.slice"`, 200},
		{"other", `"` + l7proxy.PodUIDMeta + `": "nope"`, http.StatusBadRequest},
	} {
		got := doToken(t, "PUT", n.url+"/v1/catalog/register", "root",
			`{"Node": "`+c.node+`", "Address": "127.0.0.1", "Service": {"ID": "c1", "Service": "cat", "Port": 84, "Meta": {`+c.meta+`}}}`)
		if got.code != c.code {
			t.Errorf("catalog register on %s with %s: got %d %q, want %d", c.node, c.meta, got.code, got.body, c.code)
		}
	}
}
