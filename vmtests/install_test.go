package vmtests

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The README's and deploy/systemd/README.md's install steps agree, and
// are what TestSystemdInstall runs.
func TestInstallStepsAgree(t *testing.T) {
	wd, _ := os.Getwd()
	root, err := ModuleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	deploy, err := os.ReadFile(filepath.Join(root, "deploy", "systemd", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := ParseInstallSteps(readme, deploy)
	if err != nil {
		t.Fatal(err)
	}
	if got := commands(st.Build); !slices.Equal(got, []string{"make build"}) {
		t.Errorf("build steps %q, want make build", got)
	}
	if got := commands(st.Start); len(got) < 2 || got[1] != "systemctl enable --now peerd" {
		t.Errorf("start steps %q", got)
	}
	if got := strings.Join(commands(st.Host), "\n"); !strings.Contains(got, "deploy/systemd/peerd.service /etc/systemd/system/peerd.service") {
		t.Errorf("host steps do not install the unit:\n%s", got)
	}
}

func TestParseInstallStepsDisagree(t *testing.T) {
	doc := func(host string) []byte {
		return []byte("# x\n\n## Install\n\n```sh\n# on a build machine\nmake build\n# on the host\n" + host +
			"\n```\n\ntext\n\n```hcl\n# not a heading\n```\n\n```sh\nsystemctl daemon-reload\nsystemctl enable --now peerd\n```\n\n## Next\n\n```sh\nsystemctl daemon-reload\nother\n```\n")
	}
	st, err := ParseInstallSteps(doc("useradd peerd"), doc("# a comment of its own\nuseradd peerd"))
	if err != nil {
		t.Fatalf("same commands, other comments: %v", err)
	}
	if !slices.Equal(commands(st.Start), []string{"systemctl daemon-reload", "systemctl enable --now peerd"}) {
		t.Errorf("start %q: the block of the next section was taken", st.Start)
	}
	if _, err := ParseInstallSteps(doc("useradd peerd"), doc("useradd -r peerd")); err == nil || !strings.Contains(err.Error(), "host steps") {
		t.Errorf("different host steps: err %v, want a difference", err)
	}
	if _, err := ParseInstallSteps([]byte("## Install\n\n```sh\nuseradd peerd\n```\n"), doc("x")); err == nil {
		t.Error("a block without the markers accepted")
	}
}
