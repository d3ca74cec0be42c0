package apikey

import (
	"errors"
	"fmt"
	"testing"
)

func TestReasonsDistinct(t *testing.T) {
	all := []Reason{
		ReasonWrongPrefix, ReasonWrongEnv, ReasonWrongLength, ReasonInvalidChar, ReasonBadChecksum,
		ReasonUnknownID, ReasonWrongSecret, ReasonRevoked, ReasonExpired, ReasonRotated,
		ReasonIPDenied, ReasonRateLimited, ReasonInQuery,
	}
	seen := map[Reason]bool{}
	for _, r := range all {
		if r == "" || seen[r] {
			t.Errorf("reason %q is empty or repeated", r)
		}
		seen[r] = true
	}
}

func TestReasonOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Reason
	}{
		{"sentinel", ErrChecksum, ReasonBadChecksum},
		{"wrapped", fmt.Errorf("verify: %w", ErrEnv), ReasonWrongEnv},
		{"twice wrapped", fmt.Errorf("a: %w", fmt.Errorf("b: %w", ReasonRevoked)), ReasonRevoked},
		{"joined", errors.Join(errors.New("x"), ReasonIPDenied), ReasonIPDenied},
		{"other error", errors.New("boom"), ""},
		{"nil", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReasonOf(tt.err); got != tt.want {
				t.Errorf("ReasonOf = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSentinelsMatchReasons(t *testing.T) {
	tests := []struct {
		err  error
		want Reason
	}{
		{ErrPrefix, ReasonWrongPrefix},
		{ErrEnv, ReasonWrongEnv},
		{ErrLength, ReasonWrongLength},
		{ErrAlphabet, ReasonInvalidChar},
		{ErrChecksum, ReasonBadChecksum},
	}
	for _, tt := range tests {
		wrapped := fmt.Errorf("x: %w", tt.err)
		if !errors.Is(wrapped, tt.want) || !errors.Is(wrapped, tt.err) {
			t.Errorf("%v: errors.Is does not match its reason %q", tt.err, tt.want)
		}
		if got, want := tt.err.Error(), "apikey: "+string(tt.want); got != want {
			t.Errorf("Error() = %q, want %q", got, want)
		}
	}
}
