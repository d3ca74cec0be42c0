// Command gatehouse is an OAuth 2.1 / OpenID Connect authorization server,
// API-key manager and verifying gateway in one binary. Run
// "gatehouse help" for its commands.
package main

import (
	"context"
	"os"

	"github.com/gatehouse-dev/gatehouse/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
