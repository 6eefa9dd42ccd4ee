package kubernetes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/peerd/peerd/agent/config"
)

// kustomization is the part of kustomize's Kustomization these manifests
// use. It is decoded strictly too: a field kustomize has and this test
// does not know (patches, replacements, ...) fails the test, which then
// needs to learn it rather than render the manifests wrongly.
type kustomization struct {
	APIVersion       string   `json:"apiVersion"`
	Kind             string   `json:"kind"`
	Namespace        string   `json:"namespace"`
	Resources        []string `json:"resources"`
	SecretGenerator  []generator
	GeneratorOptions struct {
		DisableNameSuffixHash bool `json:"disableNameSuffixHash"`
	} `json:"generatorOptions"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

type generator struct {
	Name  string   `json:"name"`
	Files []string `json:"files"`
}

// kinds maps apiVersion and kind to the official type a document decodes
// into. A kind missing here fails the test: add its type.
var kinds = map[string]func() any{
	"v1/Namespace":                             func() any { return &corev1.Namespace{} },
	"v1/ServiceAccount":                        func() any { return &corev1.ServiceAccount{} },
	"v1/Service":                               func() any { return &corev1.Service{} },
	"v1/ConfigMap":                             func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                                func() any { return &corev1.Secret{} },
	"apps/v1/DaemonSet":                        func() any { return &appsv1.DaemonSet{} },
	"apps/v1/StatefulSet":                      func() any { return &appsv1.StatefulSet{} },
	"policy/v1/PodDisruptionBudget":            func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":       func() any { return &networkingv1.NetworkPolicy{} },
	"rbac.authorization.k8s.io/v1/Role":        func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding": func() any { return &rbacv1.RoleBinding{} },
}

// decodeStrict decodes one YAML document into its official type, refusing
// unknown fields, a missing apiVersion or kind, an unknown kind and
// mistyped values.
func decodeStrict(doc []byte) (any, error) {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, fmt.Errorf("read apiVersion and kind: %w", err)
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return nil, fmt.Errorf("document has no apiVersion or no kind (apiVersion %q, kind %q)", tm.APIVersion, tm.Kind)
	}
	mk, ok := kinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("%s %s is not a kind this test knows: add its k8s.io/api type to kinds", tm.APIVersion, tm.Kind)
	}
	obj := mk()
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: trailing data after the object", tm.Kind)
	}
	return obj, nil
}

// documents splits a multi-document YAML file; documents that hold only
// comments are dropped.
func documents(b []byte) [][]byte {
	var out [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(b), -1) {
		content := false
		for _, line := range strings.Split(d, "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				content = true
				break
			}
		}
		if content {
			out = append(out, []byte(d))
		}
	}
	return out
}

// rendered is the kustomization's output, as kustomize build would give
// it, less the generated secrets (made from files kept out of version
// control) and the image rewrite (none is set here).
type rendered struct {
	k       kustomization
	objects []any
}

func render(t *testing.T) rendered {
	t.Helper()
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	var r rendered
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r.k); err != nil {
		t.Fatalf("kustomization.yaml: %v (a kustomize field this test does not render: teach it)", err)
	}
	if r.k.Kind != "Kustomization" || r.k.Namespace == "" || len(r.k.Resources) == 0 {
		t.Fatalf("kustomization.yaml: kind %q, namespace %q, %d resources: want a Kustomization with a namespace and resources", r.k.Kind, r.k.Namespace, len(r.k.Resources))
	}
	if len(r.k.Images) > 0 {
		t.Fatalf("kustomization.yaml sets images: the committed manifests keep the placeholder; overlays set the image")
	}
	for _, f := range r.k.Resources {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("resource %s: %v", f, err)
		}
		for i, doc := range documents(b) {
			obj, err := decodeStrict(doc)
			if err != nil {
				t.Errorf("%s, document %d: %v", f, i+1, err)
				continue
			}
			r.objects = append(r.objects, obj)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return r
}

func find[T any](t *testing.T, r rendered, name string) *T {
	t.Helper()
	for _, o := range r.objects {
		if v, ok := o.(*T); ok && objectName(o) == name {
			return v
		}
	}
	var zero T
	t.Fatalf("the manifests have no %T named %s", zero, name)
	return nil
}

func objectName(o any) string {
	if m, ok := o.(interface{ GetName() string }); ok {
		return m.GetName()
	}
	return ""
}

// Every document of every resource decodes strictly into its official
// type, and the objects peerd needs are there.
func TestManifestsDecodeStrictly(t *testing.T) {
	r := render(t)
	var got []string
	for _, o := range r.objects {
		got = append(got, fmt.Sprintf("%T %s", o, objectName(o)))
	}
	want := []string{
		"*v1.Namespace peerd", "*v1.ServiceAccount peerd",
		"*v1.Service peerd-server", "*v1.PodDisruptionBudget peerd-server", "*v1.StatefulSet peerd-server",
		"*v1.ConfigMap peerd-dataplane", "*v1.DaemonSet peerd-client",
		"*v1.NetworkPolicy peerd-server", "*v1.Service peerd-peering", "*v1.Service peerd-gateway",
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("the manifests lack %s; got %q", w, got)
		}
	}
}

// The decoder refuses what kubectl apply --validate=strict would: an
// unknown field anywhere, no kind, a value of the wrong type, a kind
// without a type here.
func TestStrictDecodingRefusesBadDocuments(t *testing.T) {
	b, err := os.ReadFile("client-daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ds := string(b)
	if _, err := decodeStrict(b); err != nil {
		t.Fatalf("the DaemonSet itself: %v", err)
	}
	replace := func(old, new string) string {
		t.Helper()
		if !strings.Contains(ds, old) {
			t.Fatalf("client-daemonset.yaml has no %q to change", old)
		}
		return strings.Replace(ds, old, new, 1)
	}
	tests := []struct {
		name, doc, want string
	}{
		{"unknown top-level field", "bogus: 1\n" + ds, `unknown field "bogus"`},
		{"unknown field in a container", replace("          imagePullPolicy: IfNotPresent\n", "          imagePullPolicy: IfNotPresent\n          imagePulPolicy: Always\n"), `unknown field "imagePulPolicy"`},
		{"misspelt probe field", replace("            periodSeconds: 10\n", "            periodSecond: 10\n"), `unknown field`},
		{"no kind", replace("kind: DaemonSet\n", ""), "no apiVersion or no kind"},
		{"wrong type", replace("      hostPID: true\n", "      hostPID: \"yes\"\n"), "cannot unmarshal string"},
		{"unknown kind", replace("kind: DaemonSet\n", "kind: DaemonSett\n"), "not a kind this test knows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeStrict([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// Each peerd container is probed on /v1/agent/health: startup, liveness
// and readiness, on its declared HTTP port.
func TestProbesUseAgentHealth(t *testing.T) {
	r := render(t)
	for name, spec := range map[string]*corev1.PodSpec{
		"DaemonSet peerd-client":   &find[appsv1.DaemonSet](t, r, "peerd-client").Spec.Template.Spec,
		"StatefulSet peerd-server": &find[appsv1.StatefulSet](t, r, "peerd-server").Spec.Template.Spec,
	} {
		c := peerdContainer(t, spec)
		for kind, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "live": c.LivenessProbe, "ready": c.ReadinessProbe} {
			if p == nil || p.HTTPGet == nil {
				t.Errorf("%s: no %s probe over HTTP", name, kind)
				continue
			}
			if want := "/v1/agent/health?probe=" + kind; p.HTTPGet.Path != want {
				t.Errorf("%s: %s probe asks %s, want %s", name, kind, p.HTTPGet.Path, want)
			}
			if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
				return cp.Name == p.HTTPGet.Port.String() && cp.ContainerPort == 8500
			}) {
				t.Errorf("%s: %s probe's port %q is not the container's HTTP port 8500", name, kind, p.HTTPGet.Port.String())
			}
		}
	}
}

func peerdContainer(t *testing.T, spec *corev1.PodSpec) *corev1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == "peerd" {
			return &spec.Containers[i]
		}
	}
	t.Fatal("no container named peerd")
	return nil
}

// The client DaemonSet turns the dataplane on for pods: its command line,
// with the ConfigMap's and the downward API's values put in, is parsed by
// peerd agent's own flag parser into the intended settings.
func TestDaemonSetTurnsTheDataplaneOn(t *testing.T) {
	r := render(t)
	ds := find[appsv1.DaemonSet](t, r, "peerd-client")
	cm := find[corev1.ConfigMap](t, r, "peerd-dataplane")
	spec := &ds.Spec.Template.Spec
	if !spec.HostNetwork || !spec.HostPID {
		t.Errorf("hostNetwork %t, hostPID %t: want both (the node's addresses; the pods' /proc/<pid>/ns/net)", spec.HostNetwork, spec.HostPID)
	}
	c := peerdContainer(t, spec)
	env := containerEnv(t, r, c, map[string]string{"status.hostIP": "10.0.0.5", "spec.nodeName": "node-a"})
	args := expand(t, c.Args, env)
	if len(args) == 0 || args[0] != "agent" {
		t.Fatalf("args %q: want peerd agent ...", args)
	}
	args = args[1:]
	if !slices.Contains(args, "-workload-netns=true") {
		t.Errorf("args %q lack -workload-netns=true", args)
	}
	// Secrets' directories are checked by TestSecretsAndConfigMapsExist;
	// the parser would read them.
	args = dropFlag(args, "config-dir", true)
	cfg, err := config.Parse(args, io.Discard)
	if err != nil {
		t.Fatalf("peerd agent %q: %v", args, err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"-cgroup-path", cfg.CgroupPath, "/sys/fs/cgroup/kubepods.slice"},
		{"-dataplane-interface", cfg.DataplaneInterfaces, []string{cm.Data["DATAPLANE_INTERFACE"]}},
		{"-virtual-ip-cidr", cfg.VirtualIPv4CIDR, "240.0.0.0/4"},
		{"-virtual-ip6-cidr", cfg.VirtualIPv6CIDR, "fd70:6565:7264::/48"},
		{"-dns-addr", cfg.DNSAddr, "10.0.0.5:8600"},
		{"-recursor", cfg.Recursors, []string{cm.Data["CLUSTER_DNS"]}},
		{"-gateway-addr", cfg.GatewayAddr, "10.0.0.5:8443"},
		{"-http-addr", cfg.HTTPAddr, "10.0.0.5:8500"},
		{"-allow-root-cgroup", cfg.AllowRootCgroup, false},
		{"-server", cfg.Server, false},
		{"-workload-netns", cfg.WorkloadNetns, true},
		{"-workload-dns-addrs", cfg.WorkloadDNSAddrs, "127.0.0.1:53,[::1]:53"},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
	if cm.Data["WORKLOAD_DNS_ADDRS"] != "127.0.0.1:53,[::1]:53" {
		t.Errorf("WORKLOAD_DNS_ADDRS %q: want 127.0.0.1:53,[::1]:53", cm.Data["WORKLOAD_DNS_ADDRS"])
	}
	// The host's hierarchies the dataplane needs.
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.ReadOnly
	}
	for path, ro := range map[string]bool{"/sys/fs/bpf": false, "/sys/fs/cgroup": true, "/var/lib/peerd": false} {
		if got, ok := mounts[path]; !ok || got != ro {
			t.Errorf("mount %s: present %t, read-only %t; want present, read-only %t", path, ok, got, ro)
		}
	}
}

// dropFlag removes -name (and its value, when it takes one as the next
// argument) from args.
func dropFlag(args []string, name string, hasValue bool) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "-"+name && hasValue:
			i++
		case args[i] == "-"+name, strings.HasPrefix(args[i], "-"+name+"="):
		default:
			out = append(out, args[i])
		}
	}
	return out
}

// containerEnv is c's environment as the kubelet makes it: envFrom
// ConfigMaps, then env (values, fieldRefs from fields, $(VAR) expanded).
func containerEnv(t *testing.T, r rendered, c *corev1.Container, fields map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Fatalf("envFrom %+v: only ConfigMaps are expected", from)
		}
		for k, v := range find[corev1.ConfigMap](t, r, from.ConfigMapRef.Name).Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			v, ok := fields[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				t.Fatalf("env %s: field %s has no test value", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			env[e.Name] = v
		case e.ValueFrom != nil:
			t.Fatalf("env %s: only fieldRefs are expected", e.Name)
		default:
			env[e.Name] = expandOne(t, e.Value, env)
		}
	}
	return env
}

func expand(t *testing.T, args []string, env map[string]string) []string {
	t.Helper()
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = expandOne(t, a, env)
	}
	return out
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandOne puts env's values in for $(VAR); an undefined VAR, which the
// kubelet would leave as it is, fails the test.
func expandOne(t *testing.T, s string, env map[string]string) string {
	t.Helper()
	return varRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := varRef.FindStringSubmatch(ref)[1]
		v, ok := env[name]
		if !ok {
			t.Errorf("%q refers to $(%s), which the container's environment does not define", s, name)
		}
		return v
	})
}

// No container is privileged or can gain privileges; each holds exactly
// the capabilities intended.
func TestLeastPrivilege(t *testing.T) {
	r := render(t)
	tests := []struct {
		name string
		spec *corev1.PodSpec
		add  []corev1.Capability
	}{
		{"DaemonSet peerd-client", &find[appsv1.DaemonSet](t, r, "peerd-client").Spec.Template.Spec,
			[]corev1.Capability{"BPF", "NET_ADMIN", "PERFMON", "SYS_RESOURCE", "SYS_ADMIN", "SYS_PTRACE"}},
		{"StatefulSet peerd-server", &find[appsv1.StatefulSet](t, r, "peerd-server").Spec.Template.Spec, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.spec.AutomountServiceAccountToken == nil || *tt.spec.AutomountServiceAccountToken {
				t.Error("the service account token is mounted: peerd needs none")
			}
			for _, c := range append(slices.Clone(tt.spec.InitContainers), tt.spec.Containers...) {
				sc := c.SecurityContext
				if sc == nil {
					t.Errorf("container %s has no securityContext", c.Name)
					continue
				}
				if sc.Privileged != nil && *sc.Privileged {
					t.Errorf("container %s is privileged", c.Name)
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
				}
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("container %s: the root file system is writable", c.Name)
				}
				if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
					t.Errorf("container %s does not drop ALL capabilities", c.Name)
					continue
				}
				if got := sc.Capabilities.Add; !slices.Equal(got, tt.add) {
					t.Errorf("container %s adds %v, want exactly %v", c.Name, got, tt.add)
				}
			}
		})
	}
}

// The NetworkPolicy keeps the servers' internal ports to peerd's pods and
// the nodes, and leaves the peering port and the gateway open.
func TestNetworkPolicyLimitsTheInternalPorts(t *testing.T) {
	r := render(t)
	np := find[networkingv1.NetworkPolicy](t, r, "peerd-server")
	sts := find[appsv1.StatefulSet](t, r, "peerd-server")
	for k, v := range np.Spec.PodSelector.MatchLabels {
		if sts.Spec.Template.Labels[k] != v {
			t.Errorf("the policy selects %s=%s, which the server pods do not carry", k, v)
		}
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("policyTypes %v, want [Ingress]", np.Spec.PolicyTypes)
	}
	type portKey struct {
		port  int
		proto corev1.Protocol
	}
	open, limited := map[portKey]bool{}, map[portKey]bool{}
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("an ingress rule without ports opens every port: %+v", rule)
		}
		for _, p := range rule.Ports {
			k := portKey{p.Port.IntValue(), *p.Protocol}
			if len(rule.From) == 0 {
				open[k] = true
			} else {
				limited[k] = true
			}
		}
		for _, peer := range rule.From {
			if peer.NamespaceSelector != nil {
				t.Errorf("a peer with a namespaceSelector reaches the internal ports: %+v", peer)
			}
			if peer.IPBlock != nil && (peer.IPBlock.CIDR == "0.0.0.0/0" || peer.IPBlock.CIDR == "::/0") {
				t.Errorf("ipBlock %s lets everyone in", peer.IPBlock.CIDR)
			}
		}
	}
	for _, k := range []portKey{{8300, "TCP"}, {8301, "TCP"}, {8301, "UDP"}, {8502, "TCP"}, {8500, "TCP"}} {
		if !limited[k] || open[k] {
			t.Errorf("internal port %d/%s: limited %t, open %t; want limited only", k.port, k.proto, limited[k], open[k])
		}
	}
	for _, k := range []portKey{{8503, "TCP"}, {8443, "TCP"}} {
		if !open[k] {
			t.Errorf("port %d/%s is not open to other clusters", k.port, k.proto)
		}
	}
}

// Other clusters reach the peering port of the servers and the node
// gateways through services of type LoadBalancer (or NodePort).
func TestExternalServices(t *testing.T) {
	r := render(t)
	ds := find[appsv1.DaemonSet](t, r, "peerd-client")
	sts := find[appsv1.StatefulSet](t, r, "peerd-server")
	for _, tt := range []struct {
		name   string
		port   int32
		labels map[string]string
	}{
		{"peerd-peering", 8503, sts.Spec.Template.Labels},
		{"peerd-gateway", 8443, ds.Spec.Template.Labels},
	} {
		svc := find[corev1.Service](t, r, tt.name)
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer && svc.Spec.Type != corev1.ServiceTypeNodePort {
			t.Errorf("%s is of type %q: other clusters cannot reach it", tt.name, svc.Spec.Type)
		}
		for k, v := range svc.Spec.Selector {
			if tt.labels[k] != v {
				t.Errorf("%s selects %s=%s, which its pods do not carry", tt.name, k, v)
			}
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != tt.port || svc.Spec.Ports[0].TargetPort.IntValue() != int(tt.port) {
			t.Errorf("%s ports %+v: want exactly %d", tt.name, svc.Spec.Ports, tt.port)
		}
	}
}

// Every Secret a pod mounts is one the kustomization generates, from files
// it names (the gossip key and the join credentials), and every ConfigMap
// and service account a pod names exists.
func TestSecretsAndConfigMapsExist(t *testing.T) {
	r := render(t)
	secrets := map[string]generator{}
	for _, g := range r.k.SecretGenerator {
		secrets[g.Name] = g
	}
	for _, want := range []string{"peerd-gossip", "peerd-trust"} {
		if _, ok := secrets[want]; !ok {
			t.Errorf("the kustomization generates no secret %s", want)
		}
	}
	for name, spec := range map[string]*corev1.PodSpec{
		"DaemonSet peerd-client":   &find[appsv1.DaemonSet](t, r, "peerd-client").Spec.Template.Spec,
		"StatefulSet peerd-server": &find[appsv1.StatefulSet](t, r, "peerd-server").Spec.Template.Spec,
	} {
		find[corev1.ServiceAccount](t, r, spec.ServiceAccountName)
		mounted := map[string]bool{}
		for _, v := range spec.Volumes {
			switch {
			case v.Secret != nil:
				g, ok := secrets[v.Secret.SecretName]
				if !ok {
					t.Errorf("%s mounts secret %s, which the kustomization does not generate", name, v.Secret.SecretName)
				}
				for _, item := range v.Secret.Items {
					if !slices.ContainsFunc(g.Files, func(f string) bool { return f == item.Key || strings.HasSuffix(f, "/"+item.Key) }) {
						t.Errorf("%s mounts key %s of secret %s, which has no such file (%v)", name, item.Key, g.Name, g.Files)
					}
				}
			case v.ConfigMap != nil:
				find[corev1.ConfigMap](t, r, v.ConfigMap.Name)
			}
		}
		c := peerdContainer(t, spec)
		for _, m := range c.VolumeMounts {
			mounted[m.Name] = true
		}
		for _, v := range spec.Volumes {
			if !mounted[v.Name] {
				t.Errorf("%s: volume %s is mounted nowhere", name, v.Name)
			}
		}
		// The gossip key and the join credential reach peerd.
		args := strings.Join(c.Args, " ")
		for _, want := range []string{"-config-dir /etc/peerd.d", "-join-token-file /etc/peerd-trust/"} {
			if !strings.Contains(args, want) {
				t.Errorf("%s: args lack %q", name, want)
			}
		}
	}
}
