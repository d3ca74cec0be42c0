package cli

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
)

// TestServeRedisSetting checks that --redis is a serve setting (flag,
// environment, config file) and that a malformed URL stops start-up
// without showing its password.
func TestServeRedisSetting(t *testing.T) {
	const bad = "redis://:hunter2-pw@cache:port/0"
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "gatehouse.toml")
	os.WriteFile(cfgFile, []byte("redis = \""+bad+"\"\n"), 0o600)
	cases := []struct {
		name string
		args []string
		env  string
	}{
		{"flag", []string{"--redis", bad}, ""},
		{"environment", nil, bad},
		{"config file", []string{"--config", cfgFile}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GATEHOUSE_REDIS", tc.env)
			args := append([]string{"serve", "--data", t.TempDir(), "--addr", freeAddr(t)}, tc.args...)
			err := Run(context.Background(), args, io.Discard, io.Discard)
			if !errors.Is(err, ratelimit.ErrBadURL) {
				t.Fatalf("got %v, want ErrBadURL", err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}
