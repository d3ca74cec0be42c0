package token

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the package free of this module's other packages and
// of third-party code: resource servers import it.
func TestImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg != "github.com/gatehouse-dev/gatehouse/token" {
			t.Errorf("token depends on %s; want the standard library only", pkg)
		}
	}
}
