package apikey

import (
	"go/build"
	"strings"
	"testing"
)

// TestImportsStandardLibraryOnly enforces that apikey, which the store,
// CLI and servers build on, imports nothing but the standard library.
func TestImportsStandardLibraryOnly(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	imports := append(append(pkg.Imports, pkg.TestImports...), pkg.XTestImports...)
	if len(imports) == 0 {
		t.Fatal("found no imports; is the package directory right?")
	}
	for _, imp := range imports {
		if first, _, _ := strings.Cut(imp, "/"); strings.Contains(first, ".") {
			t.Errorf("apikey imports %q, want the standard library only", imp)
		}
	}
}
