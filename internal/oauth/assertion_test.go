package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// clientKey returns a new signing key of alg with the given kid.
func clientKey(t testing.TB, alg token.Algorithm, kid string) token.SigningKey {
	t.Helper()
	var signer crypto.Signer
	var err error
	switch alg {
	case token.ES256:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case token.RS256:
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
	case token.EdDSA:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return token.SigningKey{ID: kid, Algorithm: alg, Signer: signer}
}

func jwksOf(t testing.TB, keys ...token.SigningKey) []byte {
	t.Helper()
	var pubs []token.PublicKey
	for _, k := range keys {
		pubs = append(pubs, k.Public())
	}
	b, err := token.MarshalJWKS(pubs...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertionFor signs a client assertion for client id with claims changed
// by mod.
func assertionFor(t testing.TB, key token.SigningKey, id, aud string, now time.Time, mod func(map[string]any)) string {
	t.Helper()
	claims := map[string]any{
		"iss": id, "sub": id, "aud": aud, "exp": now.Add(time.Minute).Unix(), "iat": now.Unix(),
		"jti": NewClientID(),
	}
	if mod != nil {
		mod(claims)
	}
	s, err := token.Sign(key, "JWT", claims)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPrivateKeyJWT(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		e := newM2MEnv(t, open, nil)
		now := e.clock.Now()
		es := clientKey(t, token.ES256, "es")
		rs := clientKey(t, token.RS256, "rs")
		ed := clientKey(t, token.EdDSA, "ed")
		c, _ := e.newClient(t, store.Client{TokenEndpointAuthMethod: authPrivateKeyJWT, JWKS: jwksOf(t, es, rs, ed)})
		// A client whose keys are served at a jwks_uri.
		jwks := jwksOf(t, es)
		keySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(jwks)
		}))
		defer keySrv.Close()
		byURI, _ := e.newClient(t, store.Client{TokenEndpointAuthMethod: authPrivateKeyJWT, JWKSURI: keySrv.URL})
		secretClient, _ := e.newClient(t, store.Client{})
		stranger := clientKey(t, token.ES256, "es") // same kid, other key
		tokenURL := e.issuer + TokenPath
		replayed := assertionFor(t, es, c.ID, tokenURL, now, nil)

		cases := []struct {
			name      string
			assertion string
			clientID  string
			want      int
		}{
			{"ES256, aud token endpoint", assertionFor(t, es, c.ID, tokenURL, now, nil), "", 200},
			{"RS256, aud issuer", assertionFor(t, rs, c.ID, e.issuer, now, nil), "", 200},
			{"EdDSA, aud array", assertionFor(t, ed, c.ID, "", now, func(m map[string]any) { m["aud"] = []string{"x", e.issuer} }), "", 200},
			{"with matching client_id", assertionFor(t, es, c.ID, tokenURL, now, nil), c.ID, 200},
			{"jwks_uri", assertionFor(t, es, byURI.ID, tokenURL, now, nil), "", 200},
			{"first use", replayed, "", 200},
			{"replay", replayed, "", 401},
			{"mismatching client_id", assertionFor(t, es, c.ID, tokenURL, now, nil), byURI.ID, 401},
			{"unknown key", assertionFor(t, stranger, c.ID, tokenURL, now, nil), "", 401},
			{"unknown kid", assertionFor(t, token.SigningKey{ID: "nope", Algorithm: token.ES256, Signer: es.Signer}, c.ID, tokenURL, now, nil), "", 401},
			{"other audience", assertionFor(t, es, c.ID, "https://elsewhere", now, nil), "", 401},
			{"expired", assertionFor(t, es, c.ID, tokenURL, now, func(m map[string]any) { m["exp"] = now.Add(-time.Minute).Unix() }), "", 401},
			{"no exp", assertionFor(t, es, c.ID, tokenURL, now, func(m map[string]any) { delete(m, "exp") }), "", 401},
			{"lifetime too long", assertionFor(t, es, c.ID, tokenURL, now, func(m map[string]any) { m["exp"] = now.Add(time.Hour).Unix() }), "", 401},
			{"not yet valid", assertionFor(t, es, c.ID, tokenURL, now, func(m map[string]any) { m["nbf"] = now.Add(2 * time.Minute).Unix() }), "", 401},
			{"iss differs from sub", assertionFor(t, es, c.ID, tokenURL, now, func(m map[string]any) { m["iss"] = "someone" }), "", 401},
			{"no jti", assertionFor(t, es, c.ID, tokenURL, now, func(m map[string]any) { delete(m, "jti") }), "", 401},
			{"exp as string", assertionFor(t, es, c.ID, tokenURL, now, func(m map[string]any) { m["exp"] = "soon" }), "", 401},
			{"client registered for a secret", assertionFor(t, es, secretClient.ID, tokenURL, now, nil), "", 401},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				form := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {assertionTypeJWT},
					"client_assertion": {tc.assertion}}
				if tc.clientID != "" {
					form.Set("client_id", tc.clientID)
				}
				status, _, body := e.post(t, TokenPath, form, "", "")
				if status != tc.want {
					t.Errorf("status %d (%s), want %d", status, body, tc.want)
				}
				if tc.want == 401 && errorCode(t, body) != errInvalidClient {
					t.Errorf("error %s, want invalid_client", body)
				}
			})
		}
		// The introspection endpoint accepts its own URL as audience.
		form := url.Values{"token": {"x"}, "client_assertion_type": {assertionTypeJWT},
			"client_assertion": {assertionFor(t, es, c.ID, e.issuer+IntrospectPath, now, nil)}}
		if status, _, body := e.post(t, IntrospectPath, form, "", ""); status != 200 {
			t.Errorf("introspect with private_key_jwt: %d %s, want 200", status, body)
		}
	})
}

func TestParseAssertionStrict(t *testing.T) {
	key := clientKey(t, token.ES256, "k")
	good := assertionFor(t, key, "c", "aud", time.Now(), nil)
	if _, err := parseAssertion(good); err != nil {
		t.Fatalf("parseAssertion(good) = %v", err)
	}
	b64 := func(s string) string { return b64url([]byte(s)) }
	cases := map[string]string{
		"two parts":         "a.b",
		"four parts":        good + ".x",
		"padding":           b64(`{"alg":"ES256"}`) + "=." + b64(`{}`) + ".AA",
		"header not object": b64(`[1]`) + "." + b64(`{}`) + ".AA",
		"duplicate alg":     b64(`{"alg":"ES256","alg":"none"}`) + "." + b64(`{}`) + ".AA",
		"duplicate sub":     b64(`{"alg":"ES256"}`) + "." + b64(`{"sub":"a","sub":"b"}`) + ".AA",
		"crit":              b64(`{"alg":"ES256","crit":["x"]}`) + "." + b64(`{}`) + ".AA",
		"trailing data":     b64(`{"alg":"ES256"} {}`) + "." + b64(`{}`) + ".AA",
		"typed wrong":       b64(`{"alg":"ES256"}`) + "." + b64(`{"exp":"x"}`) + ".AA",
		"too large":         string(make([]byte, maxAssertionSize+1)),
	}
	for name, raw := range cases {
		if _, err := parseAssertion(raw); err == nil {
			t.Errorf("%s: parseAssertion succeeded, want an error", name)
		}
	}
	// "none" and HMAC never verify, whatever the key.
	a, _ := parseAssertion(good)
	for _, alg := range []string{"none", "HS256", "ES384", ""} {
		if verifySignature(key.Public(), alg, a.signingInput, a.signature) {
			t.Errorf("verifySignature with alg %q succeeded", alg)
		}
	}
	if !verifySignature(key.Public(), "ES256", a.signingInput, a.signature) {
		t.Error("verifySignature of a good assertion failed")
	}
}
