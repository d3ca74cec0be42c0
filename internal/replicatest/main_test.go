package replicatest

import (
	"os"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/cli"
	"github.com/gatehouse-dev/gatehouse/internal/proctest"
)

// envLong enables the longer variants of the tests.
const envLong = "GATEHOUSE_LONG_TESTS"

func TestMain(m *testing.M) { proctest.Main(m, cli.Main) }

// longTests reports whether the long variants were asked for.
func longTests() bool { return os.Getenv(envLong) == "1" }
