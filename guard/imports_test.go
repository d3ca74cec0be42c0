package guard

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the package free of this module's internal packages
// and of third-party code: services import it. The token package is the
// only allowed non-standard dependency. (Tests may import more.)
func TestImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := map[string]bool{
		"github.com/gatehouse-dev/gatehouse/guard": true,
		"github.com/gatehouse-dev/gatehouse/token": true,
	}
	for _, pkg := range strings.Fields(string(out)) {
		if !allowed[pkg] {
			t.Errorf("guard depends on %s; want the standard library and token only", pkg)
		}
	}
}
