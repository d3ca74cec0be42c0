package token

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestIssueErrors(t *testing.T) {
	f := newFixture(t, ES256, nil)
	tests := []struct {
		name   string
		modify func(*Claims)
		want   error
	}{
		{"no exp", func(c *Claims) { c.ExpiresAt = 0 }, ErrMissingClaim},
		{"exp before iat", func(c *Claims) { c.ExpiresAt = c.IssuedAt - 1 }, nil},
		{"exp equals iat", func(c *Claims) { c.ExpiresAt = c.IssuedAt }, nil},
		{"no sub", func(c *Claims) { c.Subject = "" }, ErrMissingClaim},
		{"no aud", func(c *Claims) { c.Audience = nil }, ErrMissingClaim},
		{"no client_id", func(c *Claims) { c.ClientID = "" }, ErrMissingClaim},
		{"unknown kind", func(c *Claims) { c.Kind = "root" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validClaims()
			tt.modify(&c)
			tok, _, err := f.issuer.Issue(c)
			if err == nil {
				t.Fatalf("Issue: got %q, nil, want an error", tok)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Issue: got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestIssueFills(t *testing.T) {
	f := newFixture(t, ES256, nil)
	c := validClaims()
	c.IssuedAt = 0
	c.Issuer = "ignored"
	ids := map[string]bool{}
	for range 100 {
		_, got, err := f.issuer.Issue(c)
		if err != nil {
			t.Fatal(err)
		}
		if got.Issuer != testIssuer || got.IssuedAt != testNow.Unix() {
			t.Fatalf("Issue: got iss %q iat %d, want %q %d", got.Issuer, got.IssuedAt, testIssuer, testNow.Unix())
		}
		raw, err := b64Strict.DecodeString(got.ID)
		if err != nil || len(raw) != 16 {
			t.Fatalf("jti %q: want 16 random bytes in base64url", got.ID)
		}
		ids[got.ID] = true
	}
	if len(ids) != 100 {
		t.Errorf("jti: got %d distinct values in 100 tokens", len(ids))
	}
	c.ID = "mine"
	if _, got, _ := f.issuer.Issue(c); got.ID != "mine" {
		t.Errorf("jti: got %q, want the caller's %q", got.ID, "mine")
	}
}

func TestIssuerRotation(t *testing.T) {
	a, b := newSigningKey(t, ES256), newSigningKey(t, EdDSA)
	active := a
	iss, err := NewIssuer(IssuerConfig{Issuer: testIssuer, Key: func() (SigningKey, error) { return active, nil }, Now: fixedClock})
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := NewStaticKeySet(a.Public(), b.Public())
	v, _ := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: ks, Now: fixedClock})
	for _, k := range []SigningKey{a, b} {
		active = k
		tok, _, err := iss.Issue(validClaims())
		if err != nil {
			t.Fatal(err)
		}
		hdr, _ := b64.DecodeString(strings.Split(tok, ".")[0])
		if want := `{"alg":"` + string(k.Algorithm) + `","kid":"` + k.ID + `","typ":"at+jwt"}`; string(hdr) != want {
			t.Errorf("header: got %s, want %s", hdr, want)
		}
		if _, err := v.Verify(bg, tok); err != nil {
			t.Errorf("Verify with key %s: %v", k.ID, err)
		}
	}
	boom := errors.New("no active key")
	bad, _ := NewIssuer(IssuerConfig{Issuer: testIssuer, Key: func() (SigningKey, error) { return SigningKey{}, boom }})
	if _, _, err := bad.Issue(validClaims()); !errors.Is(err, boom) {
		t.Errorf("Issue with failing Key: got %v, want %v", err, boom)
	}
	for _, cfg := range []IssuerConfig{{Key: iss.key}, {Issuer: testIssuer}} {
		if _, err := NewIssuer(cfg); err == nil {
			t.Errorf("NewIssuer(%+v): got nil error", cfg)
		}
	}
}

// TestSignIDToken signs another struct (as the server does for ID tokens)
// and checks the result with encoding/json and the Verifier.
func TestSignIDToken(t *testing.T) {
	f := newFixture(t, RS256, nil)
	type idToken struct {
		Claims
		Nonce string `json:"nonce"`
	}
	want := idToken{Claims: validClaims(), Nonce: "n-1"}
	want.Issuer, want.ID = testIssuer, "id-1"
	tok, err := Sign(f.key, "JWT", want)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	hdr, _ := b64.DecodeString(parts[0])
	if want := `{"alg":"RS256","kid":"key-RS256","typ":"JWT"}`; string(hdr) != want {
		t.Errorf("header: got %s, want %s", hdr, want)
	}
	body, _ := b64.DecodeString(parts[1])
	var got idToken
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Nonce != want.Nonce || got.Subject != want.Subject || !got.Audience.Contains(testAudience) {
		t.Errorf("payload: got %+v, want %+v", got, want)
	}
	ks, _ := NewStaticKeySet(f.key.Public())
	v, _ := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: ks, Type: "JWT", Now: fixedClock})
	if _, err := v.Verify(bg, tok); err != nil {
		t.Errorf("Verify: %v", err)
	}
	// Without typ, no typ header is written, and an access-token verifier
	// refuses the token.
	tok, err = Sign(f.key, "", &want.Claims)
	if err != nil {
		t.Fatal(err)
	}
	if hdr, _ := b64.DecodeString(strings.Split(tok, ".")[0]); strings.Contains(string(hdr), "typ") {
		t.Errorf("header: got %s, want no typ", hdr)
	}
	if _, err := f.verifier.Verify(bg, tok); !errors.Is(err, ErrType) {
		t.Errorf("Verify: got %v, want %v", err, ErrType)
	}
}
