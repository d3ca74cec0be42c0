// Package replicatest holds process-level reliability tests: several
// `gatehouse serve` replicas on one PostgreSQL behind a test load balancer,
// kill -9 during write-heavy load on SQLite and PostgreSQL, and a
// PostgreSQL outage simulated with a TCP proxy. The tests re-execute the
// test binary as the gatehouse command, so they run real processes without
// `go build`. The package has no non-test code; see RELIABILITY.md.
package replicatest
