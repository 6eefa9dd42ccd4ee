package policy

import (
	"strings"
	"sync"
	"testing"

	"github.com/peerd/peerd/catalog/state"
)

func instance(node, zone, version string, tags ...string) state.CheckServiceNode {
	return state.CheckServiceNode{
		Node: &state.Node{Node: node, Datacenter: "dc1", Meta: map[string]string{"zone": zone}},
		Service: &state.Service{
			ID: "web-" + node, Service: "web", Tags: tags, Port: 8080,
			Meta: map[string]string{"version": version},
		},
		Checks: []*state.HealthCheck{{Node: node, CheckID: "serfHealth", Status: state.HealthPassing}},
	}
}

func TestFilterMatch(t *testing.T) {
	v1a := instance("n1", "a", "v1", "primary")
	v2b := instance("n2", "b", "v2", "v2", "canary")
	noMeta := state.CheckServiceNode{Node: &state.Node{Node: "n3"}, Service: &state.Service{Service: "web"}}
	tests := []struct {
		expr string
		in   state.CheckServiceNode
		want bool
	}{
		{`Service.Tags contains "v2"`, v2b, true},
		{`Service.Tags contains "v2"`, v1a, false},
		{`"canary" in Service.Tags`, v2b, true},
		{`Service.Meta.version == v1`, v1a, true},
		{`Service.Meta.version == v1`, v2b, false},
		{`Service.Meta.version != v1`, v2b, true},
		{`Service.Meta.version == v1`, noMeta, false},
		{`Service.Meta.version != v1`, noMeta, true},
		{`Node.Meta.zone == a`, v1a, true},
		{`Node.Meta.zone == a and Service.Meta.version == v1`, v1a, true},
		{`Node.Meta.zone == a or Service.Meta.version == v2`, v2b, true},
		{`not (Node.Meta.zone == a)`, v2b, true},
		{`Node.Node matches "^n[0-9]$"`, v2b, true},
		{`Node.Node not matches "^n1$"`, v1a, false},
		{`Service.Port == 8080`, v1a, true},
		{`Service.ID == "web-n1"`, v1a, true},
		{`Node.Datacenter == dc1`, v1a, true},
		{`Service.Tags is empty`, noMeta, true},
		{`any Checks as c { c.Status == passing }`, v1a, true},
		{`Node.Meta.zone == a`, state.CheckServiceNode{Service: &state.Service{}}, false}, // nil Node
		{`Service.NoSuchField == x`, v1a, false},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			f, err := CompileFilter(tt.expr)
			if err != nil {
				t.Fatalf("CompileFilter: %v", err)
			}
			if got := f.Match(tt.in); got != tt.want {
				_, evalErr := f.Eval(tt.in)
				t.Errorf("got %v, want %v (eval error: %v)", got, tt.want, evalErr)
			}
			if f.Expression() != tt.expr {
				t.Errorf("got expression %q, want %q", f.Expression(), tt.expr)
			}
		})
	}
}

func TestFilterEvalError(t *testing.T) {
	f, err := CompileFilter(`Service.NoSuchField == x`)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := f.Eval(instance("n1", "a", "v1"))
	if ok || err == nil || !strings.Contains(err.Error(), `filter "Service.NoSuchField == x"`) {
		t.Errorf("got %v, %v; want false and an error naming the filter", ok, err)
	}
}

func TestCompileFilterEmpty(t *testing.T) {
	for _, expr := range []string{"", "  \n"} {
		f, err := CompileFilter(expr)
		if f != nil || err != nil {
			t.Fatalf("CompileFilter(%q) = %v, %v; want nil, nil", expr, f, err)
		}
		if !f.Match(instance("n1", "a", "v1")) {
			t.Error("nil filter does not match")
		}
		if f.Expression() != "" {
			t.Error("nil filter has an expression")
		}
	}
}

func TestCompileFilterErrors(t *testing.T) {
	tests := []struct{ expr, want string }{
		{`Service.Meta.version ==`, `invalid filter "Service.Meta.version =="`},
		{`Service.Tags contains`, `invalid filter "Service.Tags contains"`},
		{`(Service.ID == a`, `invalid filter "(Service.ID == a"`},
		{`Node.Node matches "(["`, `bad regular expression "(["`},
		{`Node.Node == a and not Service.ID matches "a{2,1}"`, `bad regular expression "a{2,1}"`},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			f, err := CompileFilter(tt.expr)
			if err == nil || f != nil {
				t.Fatalf("got %v, %v; want an error", f, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestFilterConcurrent evaluates filters from many goroutines; run with -race
// it checks that the lazily compiled regular expressions of "matches" are
// not shared.
func TestFilterConcurrent(t *testing.T) {
	c := NewCache()
	exprs := []string{`Node.Node matches "^n[0-9]+$"`, `Service.Meta.version == v1`, `Service.ID not matches "x"`}
	in := instance("n1", "a", "v1")
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				for _, e := range exprs {
					f, err := c.Filter(e)
					if err != nil {
						t.Error(err)
						return
					}
					if !f.Match(in) {
						t.Errorf("%s: no match", e)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if _, n := c.Len(); n != len(exprs) {
		t.Errorf("cache holds %d filters, want %d", n, len(exprs))
	}
}

func TestCacheFilterCachesErrors(t *testing.T) {
	c := NewCache()
	_, err1 := c.Filter("a ==")
	_, err2 := c.Filter("a ==")
	if err1 == nil || err1 != err2 {
		t.Errorf("got %v and %v, want the same cached error", err1, err2)
	}
	f1, _ := c.Filter("Service.ID == a")
	f2, _ := c.Filter("Service.ID == a")
	if f1 == nil || f1 != f2 {
		t.Error("filter not cached")
	}
	var nilCache *Cache
	if f, err := nilCache.Filter("Service.ID == a"); f == nil || err != nil {
		t.Errorf("nil cache: %v, %v", f, err)
	}
}
