package token

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzVerify feeds arbitrary strings to Verify. It must never panic, and
// the only strings that verify are the tokens the issuer signed: any
// mutation of a valid token must fail.
func FuzzVerify(f *testing.F) {
	var verifiers []*Verifier
	genuine := map[string]bool{}
	for _, alg := range algorithms {
		fx := newFixture(f, alg, nil)
		ks, _ := NewStaticKeySet(fx.key.Public())
		cached, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: ks, Cache: NewCache(64), Now: fixedClock})
		if err != nil {
			f.Fatal(err)
		}
		verifiers = append(verifiers, fx.verifier, cached)
		c := validClaims()
		c.Actor = &Actor{Subject: "a", Actor: &Actor{Subject: "b"}}
		for _, tok := range []string{fx.issue(f, validClaims()), fx.issue(f, c)} {
			genuine[tok] = true
			f.Add(tok)
			parts := strings.Split(tok, ".")
			f.Add(parts[0] + "." + parts[1] + ".")
			f.Add(parts[0] + ".." + parts[2])
		}
	}
	f.Add("")
	f.Add("..")
	f.Add("e30.e30.")
	f.Fuzz(func(t *testing.T, tok string) {
		for _, v := range verifiers {
			c, err := v.Verify(bg, tok)
			if err == nil && !genuine[tok] {
				t.Fatalf("Verify accepted a token that was never issued: %q", tok)
			}
			if err == nil && c == nil {
				t.Fatal("Verify returned nil claims and nil error")
			}
			if err != nil && c != nil {
				t.Fatal("Verify returned claims with an error")
			}
		}
	})
}

// FuzzParseClaims compares the strict claims reader with encoding/json:
// whatever it accepts, encoding/json accepts with the same values.
func FuzzParseClaims(f *testing.F) {
	for _, s := range []string{
		payload(nil),
		`{"iss":"i","sub":"s","aud":["a","b"],"exp":20,"iat":10,"nbf":11,"auth_time":9,"jti":"j","client_id":"c","scope":"x y","act":{"sub":"a1","client_id":"c1","act":{"sub":"a2"}},"gh_kind":"apikey","gh_key_id":"k"}`,
		`{"sub":"\u00e9\ud83d\ude00\n","x":[1,-2.5e3,true,null,{"y":{}}]}`,
		`{"a":1,"a":2}`,
		`{"aud":[]}`,
		`[]`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var got Claims
		err := parseClaims(s, &got)
		if checkErr := checkJSON(s); checkErr == nil && !json.Valid([]byte(s)) {
			t.Fatalf("checkJSON accepts invalid JSON %q", s)
		}
		if err != nil {
			return
		}
		if checkErr := checkJSON(s); checkErr != nil {
			t.Fatalf("parseClaims accepts %q but checkJSON says %v", s, checkErr)
		}
		// encoding/json matches member names case-insensitively ("ISS"
		// sets Issuer, "ACt" must then be an object); JWT claim names are
		// case-sensitive, so such inputs have no encoding/json oracle.
		if hasCaseAlias([]byte(s)) {
			return
		}
		var std Claims
		if err := json.Unmarshal([]byte(s), &std); err != nil {
			t.Fatalf("parseClaims accepts %q, encoding/json says %v", s, err)
		}
		if !reflect.DeepEqual(got, std) {
			t.Fatalf("parseClaims(%q):\n got %+v\nwant %+v", s, got, std)
		}
		// The writer's output reads back to the same claims.
		var back Claims
		if err := parseClaims(string(appendClaims(nil, &got)), &back); err != nil || !reflect.DeepEqual(back, got) {
			t.Fatalf("round trip of %+v: got %+v, %v", got, back, err)
		}
	})
}

// hasCaseAlias reports whether the object in data, or an "act" object in
// it, has a member whose name equals a claim name only when case is
// ignored.
func hasCaseAlias(data []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return false
	}
	known := []string{"iss", "sub", "aud", "exp", "iat", "nbf", "auth_time", "jti", "client_id", "scope", "act", "gh_kind", "gh_key_id"}
	for name, v := range m {
		for _, k := range known {
			if name != k && strings.EqualFold(name, k) {
				return true
			}
		}
		if name == "act" && hasCaseAlias(v) {
			return true
		}
	}
	return false
}

// FuzzAppendString checks the JSON string writer against encoding/json and
// the reader.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "abc", "<a&b>", "\u2028\x00\x7f\"\\", "\xff", "é😀"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		got := appendString(nil, s)
		if string(got) != string(want) {
			t.Fatalf("appendString(%q): got %s, want %s", s, got, want)
		}
		d := scanner{s: string(got)}
		back, ok := d.str()
		if !ok {
			t.Fatalf("str(%s) failed", got)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("str(appendString(%q)): got %q", s, back)
		}
	})
}

// FuzzParseJWKS: never panic; accepted keys are valid and survive a round
// trip through MarshalJWKS.
func FuzzParseJWKS(f *testing.F) {
	var keys []PublicKey
	for _, alg := range algorithms {
		keys = append(keys, newSigningKey(f, alg).Public())
	}
	doc, err := MarshalJWKS(keys...)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc)
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","kid":"a","crv":"P-256","x":"AA","y":"AA","d":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","kid":"a"},{"kty":"RSA","kid":"b","n":"AQAB","e":"AQAB"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseJWKS(data)
		if err != nil {
			return
		}
		for _, k := range keys {
			if err := k.check(); err != nil {
				t.Fatalf("ParseJWKS returned an invalid key: %v", err)
			}
		}
		doc, err := MarshalJWKS(keys...)
		if err != nil {
			t.Fatalf("MarshalJWKS of parsed keys: %v", err)
		}
		back, err := ParseJWKS(doc)
		if err != nil || len(back) != len(keys) {
			t.Fatalf("round trip: got %d keys, %v, want %d", len(back), err, len(keys))
		}
	})
}

// FuzzVerifyPayload signs arbitrary claim sets with a real key, so the
// fuzzer reaches the claims checks. Verify must never panic, and when it
// accepts, the claims must meet every rule.
func FuzzVerifyPayload(f *testing.F) {
	fx := newFixture(f, EdDSA, nil)
	f.Add(payload(nil))
	f.Add(payload(map[string]string{"aud": `["x","` + testAudience + `"]`, "nbf": "1700000000", "act": `{"sub":"a"}`}))
	f.Add(payload(map[string]string{"exp": "1"}))
	f.Fuzz(func(t *testing.T, p string) {
		c, err := fx.verifier.Verify(bg, fx.sign(t, header(fx, ""), p))
		if err != nil {
			return
		}
		now := testNow
		leeway := DefaultLeeway
		switch {
		case c.Issuer != testIssuer, !c.Audience.Contains(testAudience),
			c.Subject == "", c.ID == "", c.ClientID == "", c.IssuedAt == 0,
			!now.Before(time.Unix(c.ExpiresAt, 0).Add(leeway)),
			now.Add(leeway).Before(time.Unix(c.NotBefore, 0)),
			now.Add(leeway).Before(time.Unix(c.IssuedAt, 0)):
			t.Fatalf("Verify accepted claims that break a rule: %+v", c)
		}
	})
}
