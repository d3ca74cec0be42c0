// Command gatehouse is an OAuth 2.1 / OpenID Connect authorization server,
// API-key manager and verifying gateway in one binary. Run
// "gatehouse help" for its commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/gatehouse-dev/gatehouse/internal/cli"
)

func main() {
	err := cli.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, cli.ErrLiveKey):
		fmt.Fprintln(os.Stderr, "gatehouse:", err)
		os.Exit(3)
	case errors.Is(err, cli.ErrUsage):
		fmt.Fprintln(os.Stderr, "gatehouse:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "gatehouse:", err)
		os.Exit(1)
	}
}
