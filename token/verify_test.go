package token

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestVerifyValid(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(string(alg), func(t *testing.T) {
			f := newFixture(t, alg, nil)
			want := validClaims()
			want.Actor = &Actor{Subject: "svc-a", ClientID: "gateway", Actor: &Actor{Subject: "svc-0"}}
			want.Audience = Audience{"other", testAudience}
			want.NotBefore = testNow.Unix() - 10
			want.AuthTime = testNow.Unix() - 100
			want.Kind = KindAPIKey
			want.KeyID = "k_123"
			tok, issued, err := f.issuer.Issue(want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.verifier.Verify(bg, tok)
			if err != nil {
				t.Fatalf("Verify: got error %v, want nil", err)
			}
			if !reflect.DeepEqual(*got, issued) {
				t.Errorf("Verify: got %+v, want %+v", *got, issued)
			}
			if got.Issuer != testIssuer || got.ID == "" || got.IssuedAt != testNow.Unix() {
				t.Errorf("Issue did not fill iss, jti, iat: got %+v", *got)
			}
		})
	}
}

// header returns a JOSE header for f's key with extra members appended.
func header(f fixture, extra string) string {
	return `{"alg":"` + string(f.key.Algorithm) + `","kid":"` + f.key.ID + `","typ":"at+jwt"` + extra + `}`
}

// payload returns valid claims JSON with some members replaced or added:
// a member whose value is "" in repl is removed.
func payload(repl map[string]string) string {
	members := []struct{ name, value string }{
		{"iss", `"` + testIssuer + `"`},
		{"sub", `"user-1"`},
		{"aud", `"` + testAudience + `"`},
		{"exp", fmt.Sprint(testNow.Add(time.Hour).Unix())},
		{"iat", fmt.Sprint(testNow.Unix())},
		{"jti", `"id-1"`},
		{"client_id", `"client-1"`},
	}
	var b strings.Builder
	b.WriteByte('{')
	done := map[string]bool{}
	write := func(name, value string) {
		if value == "" {
			return
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", name, value)
	}
	for _, m := range members {
		v, ok := repl[m.name]
		if !ok {
			v = m.value
		}
		done[m.name] = true
		write(m.name, v)
	}
	names := make([]string, 0, len(repl))
	for name := range repl {
		if !done[name] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		write(name, repl[name])
	}
	b.WriteByte('}')
	return b.String()
}

func TestVerifyRejects(t *testing.T) {
	f := newFixture(t, ES256, nil)
	ed := newFixture(t, EdDSA, nil)
	now := testNow.Unix()
	good := f.issue(t, validClaims())
	parts := strings.Split(good, ".")

	// A token signed by the EdDSA key but naming the ES256 key.
	algConfusion := ed.sign(t, `{"alg":"EdDSA","kid":"key-ES256","typ":"at+jwt"}`, payload(nil))

	// HS256 with the public key as the HMAC secret: the classic confusion.
	pubDER, err := x509.MarshalPKIXPublicKey(f.key.Signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	hsInput := b64.EncodeToString([]byte(`{"alg":"HS256","kid":"key-ES256","typ":"at+jwt"}`)) + "." +
		b64.EncodeToString([]byte(payload(nil)))
	mac := hmac.New(sha256.New, pubDER)
	mac.Write([]byte(hsInput))
	hs256 := hsInput + "." + b64.EncodeToString(mac.Sum(nil))

	none := b64.EncodeToString([]byte(`{"alg":"none","kid":"key-ES256","typ":"at+jwt"}`)) + "." +
		b64.EncodeToString([]byte(payload(nil))) + "."

	// Change the signature's first character; change the subject.
	sig := []byte(parts[2])
	if sig[0] == 'A' {
		sig[0] = 'B'
	} else {
		sig[0] = 'A'
	}
	badSig := parts[0] + "." + parts[1] + "." + string(sig)
	tamperedPayload, _ := b64.DecodeString(parts[1])
	tamperedPayload = []byte(strings.Replace(string(tamperedPayload), "user-1234", "user-1235", 1))

	tests := []struct {
		name string
		tok  string
		want error
	}{
		{"empty", "", ErrMalformed},
		{"one part", "abc", ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"four parts", good + ".x", ErrMalformed},
		{"too large", good + strings.Repeat("A", DefaultMaxSize), ErrTooLarge},
		{"padding", parts[0] + "=." + parts[1] + "." + parts[2], ErrMalformed},
		{"standard base64", stdBase64(t, f), ErrMalformed},
		{"newline", parts[0][:4] + "\n" + parts[0][4:] + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"carriage return", parts[0] + "." + parts[1] + "\r." + parts[2], ErrMalformed},
		{"non-canonical trailing bits", parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + "B", ErrMalformed},
		{"bad signature", badSig, ErrSignature},
		{"tampered payload", parts[0] + "." + b64.EncodeToString(tamperedPayload) + "." + parts[2], ErrSignature},
		{"signature of another token", parts[0] + "." + strings.Split(f.issue(t, validClaims()), ".")[1] + "." + parts[2], ErrSignature},
		{"empty signature", parts[0] + "." + parts[1] + ".", ErrSignature},
		{"alg none", none, ErrUnsupportedAlgorithm},
		{"alg HS256 with public key", hs256, ErrUnsupportedAlgorithm},
		{"alg does not match key", algConfusion, ErrUnsupportedAlgorithm},
		{"alg lower case", f.sign(t, `{"alg":"es256","kid":"key-ES256","typ":"at+jwt"}`, payload(nil)), ErrUnsupportedAlgorithm},
		{"no alg", f.sign(t, `{"kid":"key-ES256","typ":"at+jwt"}`, payload(nil)), ErrMalformed},
		{"alg not a string", f.sign(t, `{"alg":1,"kid":"key-ES256","typ":"at+jwt"}`, payload(nil)), ErrMalformed},
		{"unknown kid", f.sign(t, `{"alg":"ES256","kid":"other","typ":"at+jwt"}`, payload(nil)), ErrUnknownKey},
		{"no kid", f.sign(t, `{"alg":"ES256","typ":"at+jwt"}`, payload(nil)), ErrUnknownKey},
		{"crit", f.sign(t, header(f, `,"crit":["exp"]`), payload(nil)), ErrMalformed},
		{"duplicate alg", f.sign(t, header(f, `,"alg":"ES256"`), payload(nil)), ErrMalformed},
		{"duplicate escaped kid", f.sign(t, header(f, `,"\u006bid":"x"`), payload(nil)), ErrMalformed},
		{"duplicate unknown header", f.sign(t, header(f, `,"x":1,"x":2`), payload(nil)), ErrMalformed},
		{"header trailing data", f.sign(t, header(f, "")+"{}", payload(nil)), ErrMalformed},
		{"header array", f.sign(t, `[1]`, payload(nil)), ErrMalformed},
		{"no typ", f.sign(t, `{"alg":"ES256","kid":"key-ES256"}`, payload(nil)), ErrType},
		{"typ JWT", f.sign(t, `{"alg":"ES256","kid":"key-ES256","typ":"JWT"}`, payload(nil)), ErrType},
		{"payload not JSON", f.sign(t, header(f, ""), "not json"), ErrMalformed},
		{"payload trailing data", f.sign(t, header(f, ""), payload(nil)+" x"), ErrMalformed},
		{"two payload objects", f.sign(t, header(f, ""), payload(nil)+payload(nil)), ErrMalformed},
		{"duplicate claim", f.sign(t, header(f, ""), strings.Replace(payload(nil), "{", `{"sub":"admin",`, 1)), ErrMalformed},
		{"duplicate escaped claim", f.sign(t, header(f, ""), strings.Replace(payload(nil), "{", `{"\u0073ub":"admin",`, 1)), ErrMalformed},
		{"duplicate unknown claim", f.sign(t, header(f, ""), payload(map[string]string{"x": `{"a":1,"a":2}`})), ErrMalformed},
		{"exp string", f.sign(t, header(f, ""), payload(map[string]string{"exp": `"9999999999"`})), ErrMalformed},
		{"exp fraction", f.sign(t, header(f, ""), payload(map[string]string{"exp": fmt.Sprint(now+60) + ".5"})), ErrMalformed},
		{"exp exponent", f.sign(t, header(f, ""), payload(map[string]string{"exp": "1e10"})), ErrMalformed},
		{"exp negative", f.sign(t, header(f, ""), payload(map[string]string{"exp": "-1"})), ErrMalformed},
		{"exp absurd", f.sign(t, header(f, ""), payload(map[string]string{"exp": "99999999999999999999"})), ErrMalformed},
		{"exp null", f.sign(t, header(f, ""), payload(map[string]string{"exp": "null"})), ErrMalformed},
		{"sub number", f.sign(t, header(f, ""), payload(map[string]string{"sub": "1"})), ErrMalformed},
		{"aud number", f.sign(t, header(f, ""), payload(map[string]string{"aud": "1"})), ErrMalformed},
		{"aud array with number", f.sign(t, header(f, ""), payload(map[string]string{"aud": `["` + testAudience + `",1]`})), ErrMalformed},
		{"aud empty array", f.sign(t, header(f, ""), payload(map[string]string{"aud": `[]`})), ErrMalformed},
		{"unknown gh_kind", f.sign(t, header(f, ""), payload(map[string]string{"gh_kind": `"admin"`})), ErrMalformed},
		{"act without sub", f.sign(t, header(f, ""), payload(map[string]string{"act": `{"client_id":"x"}`})), ErrMalformed},
		{"act not object", f.sign(t, header(f, ""), payload(map[string]string{"act": `"svc"`})), ErrMalformed},
		{"invalid UTF-8", f.sign(t, header(f, ""), payload(map[string]string{"sub": "\"\xff\""})), ErrMalformed},
		{"lone surrogate", f.sign(t, header(f, ""), payload(map[string]string{"sub": `"\ud800"`})), ErrMalformed},
		{"missing iss", f.sign(t, header(f, ""), payload(map[string]string{"iss": ""})), ErrMissingClaim},
		{"missing sub", f.sign(t, header(f, ""), payload(map[string]string{"sub": ""})), ErrMissingClaim},
		{"empty sub", f.sign(t, header(f, ""), payload(map[string]string{"sub": `""`})), ErrMissingClaim},
		{"missing aud", f.sign(t, header(f, ""), payload(map[string]string{"aud": ""})), ErrMissingClaim},
		{"missing exp", f.sign(t, header(f, ""), payload(map[string]string{"exp": ""})), ErrMissingClaim},
		{"missing iat", f.sign(t, header(f, ""), payload(map[string]string{"iat": ""})), ErrMissingClaim},
		{"missing jti", f.sign(t, header(f, ""), payload(map[string]string{"jti": ""})), ErrMissingClaim},
		{"missing client_id", f.sign(t, header(f, ""), payload(map[string]string{"client_id": ""})), ErrMissingClaim},
		{"wrong issuer", f.sign(t, header(f, ""), payload(map[string]string{"iss": `"https://evil.example.com"`})), ErrIssuer},
		{"issuer with trailing slash", f.sign(t, header(f, ""), payload(map[string]string{"iss": `"` + testIssuer + `/"`})), ErrIssuer},
		{"wrong audience", f.sign(t, header(f, ""), payload(map[string]string{"aud": `["a","b"]`})), ErrAudience},
		{"audience differs in case", f.sign(t, header(f, ""), payload(map[string]string{"aud": `"` + strings.ToUpper(testAudience) + `"`})), ErrAudience},
		{"expired beyond leeway", f.sign(t, header(f, ""), payload(map[string]string{"exp": fmt.Sprint(now - 30)})), ErrExpired},
		{"nbf beyond leeway", f.sign(t, header(f, ""), payload(map[string]string{"nbf": fmt.Sprint(now + 31)})), ErrNotYetValid},
		{"iat in the future", f.sign(t, header(f, ""), payload(map[string]string{"iat": fmt.Sprint(now + 31)})), ErrNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := f.verifier.Verify(bg, tt.tok)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify: got %v, want %v", err, tt.want)
			}
			if c != nil {
				t.Errorf("Verify: got claims %+v with error, want nil", c)
			}
			for _, part := range strings.Split(tt.tok, ".") {
				if len(part) >= 8 && strings.Contains(err.Error(), part) {
					t.Errorf("error %q echoes the token", err)
				}
			}
		})
	}
}

// stdBase64 returns a token whose header, in standard base64, has a '+'
// or '/'.
func stdBase64(t *testing.T, f fixture) string {
	for pad := ""; len(pad) < 4; pad += " " {
		tok := f.sign(t, header(f, pad+`,"x":"???"`), payload(nil))
		hdr := tok[:strings.IndexByte(tok, '.')]
		if strings.ContainsAny(hdr, "-_") {
			return strings.NewReplacer("-", "+", "_", "/").Replace(hdr) + tok[len(hdr):]
		}
	}
	t.Fatal("no header with - or _")
	return ""
}

func TestVerifyAccepts(t *testing.T) {
	f := newFixture(t, ES256, nil)
	now := testNow.Unix()
	tests := []struct {
		name    string
		header  string
		payload string
	}{
		{"typ upper case", `{"alg":"ES256","kid":"key-ES256","typ":"AT+JWT"}`, payload(nil)},
		{"typ with application/", `{"alg":"ES256","kid":"key-ES256","typ":"application/at+jwt"}`, payload(nil)},
		{"jku and jwk ignored", header(f, `,"jku":"https://evil.example.com/jwks","jwk":{"kty":"oct","k":"AAAA"},"x5c":["AAAA"]`), payload(nil)},
		{"white space", " {\n\"alg\" : \"ES256\" ,\t\"kid\":\"key-ES256\",\"typ\":\"at+jwt\"}\r\n", " " + payload(nil) + "\n"},
		{"expired within leeway", header(f, ""), payload(map[string]string{"exp": fmt.Sprint(now - 29)})},
		{"nbf within leeway", header(f, ""), payload(map[string]string{"nbf": fmt.Sprint(now + 30)})},
		{"iat within leeway", header(f, ""), payload(map[string]string{"iat": fmt.Sprint(now + 30)})},
		{"aud array", header(f, ""), payload(map[string]string{"aud": `["x","` + testAudience + `"]`})},
		{"escaped strings", header(f, ""), payload(map[string]string{"sub": `"us\u0065r-\"1\"\ud83d\ude00"`})},
		{"unknown claims", header(f, ""), payload(map[string]string{"x": `{"a":[1,2.5e3,-0,true,false,null,"s"]}`, "y": `[]`})},
		{"act chain", header(f, ""), payload(map[string]string{"act": `{"sub":"a","iss":"x","act":{"sub":"b"}}`})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := f.verifier.Verify(bg, f.sign(t, tt.header, tt.payload)); err != nil {
				t.Fatalf("Verify: got %v, want nil", err)
			}
		})
	}
	t.Run("escaped claim values", func(t *testing.T) {
		c, err := f.verifier.Verify(bg, f.sign(t, header(f, ""), payload(map[string]string{"sub": `"us\u0065r-\"1\"\ud83d\ude00"`})))
		if err != nil {
			t.Fatal(err)
		}
		if want := "user-\"1\"\U0001F600"; c.Subject != want {
			t.Errorf("sub: got %q, want %q", c.Subject, want)
		}
	})
}

func TestVerifyLeewayAndType(t *testing.T) {
	f := newFixture(t, EdDSA, nil)
	ks, _ := NewStaticKeySet(f.key.Public())
	exp := testNow.Add(-5 * time.Second).Unix()
	expired := f.sign(t, `{"alg":"EdDSA","kid":"key-EdDSA","typ":"JWT"}`, payload(map[string]string{"exp": fmt.Sprint(exp)}))
	tests := []struct {
		leeway time.Duration
		typ    string
		want   error
	}{
		{0, "JWT", nil}, // default leeway 30 s
		{-1, "JWT", ErrExpired},
		{4 * time.Second, "JWT", ErrExpired},
		{6 * time.Second, "JWT", nil},
		{0, "", ErrType}, // default at+jwt
		{0, "application/jwt", nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/%s", tt.leeway, tt.typ), func(t *testing.T) {
			v, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: ks, Leeway: tt.leeway, Type: tt.typ, Now: fixedClock})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(bg, expired); !errors.Is(err, tt.want) {
				t.Errorf("Verify: got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyMaxSize(t *testing.T) {
	f := newFixture(t, ES256, nil)
	tok := f.issue(t, validClaims())
	for _, tt := range []struct {
		max  int
		want error
	}{{len(tok), nil}, {len(tok) - 1, ErrTooLarge}} {
		ks, _ := NewStaticKeySet(f.key.Public())
		v, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: ks, MaxSize: tt.max, Now: fixedClock})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(bg, tok); !errors.Is(err, tt.want) {
			t.Errorf("MaxSize %d: got %v, want %v", tt.max, err, tt.want)
		}
	}
}

// TestVerifyLargeToken covers tokens too big for the stack scratch buffer.
func TestVerifyLargeToken(t *testing.T) {
	f := newFixture(t, RS256, nil)
	c := validClaims()
	c.Scope = strings.Repeat("scope ", 500)
	tok := f.issue(t, c)
	if len(tok) <= scratchSize {
		t.Fatalf("token of %d bytes fits the scratch buffer", len(tok))
	}
	got, err := f.verifier.Verify(bg, tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.Scope != c.Scope {
		t.Errorf("scope: got %d bytes, want %d", len(got.Scope), len(c.Scope))
	}
}

func TestNewVerifierConfig(t *testing.T) {
	ks, _ := NewStaticKeySet()
	shared := NewCache(10)
	if _, err := NewVerifier(VerifierConfig{Issuer: "i", Audience: "a", Keys: ks, Cache: shared}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  VerifierConfig
	}{
		{"no issuer", VerifierConfig{Audience: "a", Keys: ks}},
		{"no audience", VerifierConfig{Issuer: "i", Keys: ks}},
		{"no keys", VerifierConfig{Issuer: "i", Audience: "a"}},
		{"leeway too large", VerifierConfig{Issuer: "i", Audience: "a", Keys: ks, Leeway: 61 * time.Second}},
		{"negative max size", VerifierConfig{Issuer: "i", Audience: "a", Keys: ks, MaxSize: -1}},
		{"shared cache", VerifierConfig{Issuer: "i", Audience: "a", Keys: ks, Cache: shared}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v, err := NewVerifier(tt.cfg); err == nil {
				t.Errorf("NewVerifier: got %v, nil, want an error", v)
			}
		})
	}
}

// funcKeySet is a KeySet for tests.
type funcKeySet func(ctx context.Context, kid string) (PublicKey, error)

func (f funcKeySet) Key(ctx context.Context, kid string) (PublicKey, error) { return f(ctx, kid) }

func TestVerifyCustomKeySet(t *testing.T) {
	f := newFixture(t, ES256, nil)
	tok := f.issue(t, validClaims())
	other := newSigningKey(t, EdDSA)
	boom := errors.New("boom")
	tests := []struct {
		name string
		keys funcKeySet
		want error
	}{
		{"found", func(context.Context, string) (PublicKey, error) { return f.key.Public(), nil }, nil},
		{"unknown", func(context.Context, string) (PublicKey, error) { return PublicKey{}, ErrUnknownKey }, ErrUnknownKey},
		{"failure", func(context.Context, string) (PublicKey, error) { return PublicKey{}, boom }, ErrKeySetUnavailable},
		{"wrong key type for alg", func(context.Context, string) (PublicKey, error) {
			return PublicKey{ID: f.key.ID, Algorithm: ES256, Key: other.Signer.Public()}, nil
		}, ErrKeySetUnavailable},
		{"key of another algorithm", func(context.Context, string) (PublicKey, error) { return other.Public(), nil }, ErrUnsupportedAlgorithm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: tt.keys, Now: fixedClock})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(bg, tok); !errors.Is(err, tt.want) {
				t.Errorf("Verify: got %v, want %v", err, tt.want)
			}
		})
	}
}
