package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestLoggerQuietsCanceled(t *testing.T) {
	canceled := fmt.Errorf("load client: %w", context.Canceled)
	for _, tc := range []struct {
		name      string
		log       func(*testing.T, *bytes.Buffer)
		wantLevel string // "" = nothing logged
	}{
		{"canceled error at info level: dropped", func(t *testing.T, b *bytes.Buffer) {
			l, _ := newLogger(b, "json", "info")
			l.Error("client authentication: load client", "err", canceled)
		}, ""},
		{"canceled error at debug level: debug", func(t *testing.T, b *bytes.Buffer) {
			l, _ := newLogger(b, "json", "debug")
			l.Error("client authentication: load client", "err", canceled)
		}, "DEBUG"},
		{"canceled through With: dropped", func(t *testing.T, b *bytes.Buffer) {
			l, _ := newLogger(b, "json", "info")
			l.With("component", "oauth").WithGroup("g").Warn("x", "err", canceled)
		}, ""},
		{"deadline exceeded: stays an error", func(t *testing.T, b *bytes.Buffer) {
			l, _ := newLogger(b, "json", "info")
			l.Error("query", "err", fmt.Errorf("q: %w", context.DeadlineExceeded))
		}, "ERROR"},
		{"other error: stays an error", func(t *testing.T, b *bytes.Buffer) {
			l, _ := newLogger(b, "text", "info")
			l.Error("query", "err", errors.New("disk full"))
		}, "ERROR"},
		{"canceled at info level, info record: dropped", func(t *testing.T, b *bytes.Buffer) {
			l, _ := newLogger(b, "json", "info")
			l.Info("stopped", "err", canceled)
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			tc.log(t, &b)
			out := strings.TrimSpace(b.String())
			if tc.wantLevel == "" {
				if out != "" {
					t.Fatalf("logged %q, want nothing", out)
				}
				return
			}
			if out == "" {
				t.Fatalf("nothing logged, want %s", tc.wantLevel)
			}
			if strings.HasPrefix(out, "{") {
				var rec struct{ Level string }
				if err := json.Unmarshal([]byte(out), &rec); err != nil {
					t.Fatal(err)
				}
				if rec.Level != tc.wantLevel {
					t.Fatalf("level %s, want %s: %s", rec.Level, tc.wantLevel, out)
				}
			} else if !strings.Contains(out, "level="+tc.wantLevel) {
				t.Fatalf("want level %s: %s", tc.wantLevel, out)
			}
		})
	}
}
