// Package bench holds Gatehouse's comparative benchmarks. It is its own Go
// module so that the libraries it compares against stay out of the
// product's go.mod.
//
// Run from this directory:
//
//	go test -bench . -benchmem -count 5
//
// Results are recorded in ../BENCHMARKS.md.
package bench
