package oauth

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// TestFaultError: an unreachable store is a 503 the client may retry;
// anything else is a 500; neither answer repeats the error.
func TestFaultError(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"store unavailable", fmt.Errorf("store: rotate refresh token: %w: dial tcp: refused", store.ErrUnavailable), http.StatusServiceUnavailable, errTemporarilyUnavailable},
		{"other failure", errors.New("store: scan: boom"), http.StatusInternalServerError, errServerError},
		{"conflict", fmt.Errorf("x: %w", store.ErrConflict), http.StatusInternalServerError, errServerError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := faultError(tc.err)
			if got.Status != tc.status || got.Code != tc.code {
				t.Errorf("faultError = %d %s, want %d %s", got.Status, got.Code, tc.status, tc.code)
			}
			if got.Description == "" || got.Description == tc.err.Error() || safeDescription(got.Description) != got.Description {
				t.Errorf("description %q: want a fixed, safe text", got.Description)
			}
		})
	}
}
