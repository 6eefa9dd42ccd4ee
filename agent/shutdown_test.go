package agent

import (
	"go/parser"
	"go/token"
	"regexp"
	"strings"
	"testing"
)

// TestShutdownOrderDocumented checks the package doc's numbered shutdown
// order against the steps Leave and Close run, item by item: each item
// names its step, and the Leave-only items say so.
func TestShutdownOrderDocumented(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "agent.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	doc := f.Doc.Text()
	_, list, ok := strings.Cut(doc, "Shutdown order\n")
	if !ok {
		t.Fatal(`the package doc has no "Shutdown order" section`)
	}
	var items []string
	item := regexp.MustCompile(`^\s*(\d+)\.\s+(.*)$`)
	for _, line := range strings.Split(list, "\n") {
		if m := item.FindStringSubmatch(line); m != nil {
			items = append(items, m[2])
			continue
		}
		if len(items) > 0 && strings.TrimSpace(line) != "" {
			items[len(items)-1] += " " + strings.TrimSpace(line)
		}
	}
	steps := (&Agent{}).shutdownSteps()
	if len(items) != len(steps) {
		t.Fatalf("the package doc lists %d shutdown steps, the code runs %d", len(items), len(steps))
	}
	for i, s := range steps {
		if !strings.Contains(items[i], s.name) {
			t.Errorf("step %d: got doc item %q, want one about %q", i+1, items[i], s.name)
		}
		if got, want := strings.HasPrefix(items[i], "(Leave)"), s.phase == leavePhase; got != want {
			t.Errorf("step %d (%s): doc item marked (Leave) = %v, want %v", i+1, s.name, got, want)
		}
	}
}
