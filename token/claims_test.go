package token

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestParseClaims(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Claims
		err  error
	}{
		{"all claims", `{"iss":"i","sub":"s","aud":["a","b"],"exp":20,"iat":10,"nbf":11,"auth_time":9,"jti":"j","client_id":"c","scope":"x y","act":{"sub":"a1","client_id":"c1","act":{"sub":"a2"}},"gh_kind":"apikey","gh_key_id":"k"}`,
			Claims{Issuer: "i", Subject: "s", Audience: Audience{"a", "b"}, ExpiresAt: 20, IssuedAt: 10, NotBefore: 11, AuthTime: 9, ID: "j", ClientID: "c", Scope: "x y",
				Actor: &Actor{Subject: "a1", ClientID: "c1", Actor: &Actor{Subject: "a2"}}, Kind: KindAPIKey, KeyID: "k"}, nil},
		{"aud string", `{"aud":"a"}`, Claims{Audience: Audience{"a"}}, nil},
		{"empty object", `{}`, Claims{}, nil},
		{"zero exp", `{"exp":0}`, Claims{}, nil},
		{"max exp", `{"exp":253402300799}`, Claims{ExpiresAt: 253402300799}, nil},
		{"unknown members", `{"x":{"y":[{"z":null}]},"sub":"s"}`, Claims{Subject: "s"}, nil},
		{"escaped name", `{"\u0073ub":"s"}`, Claims{Subject: "s"}, nil},
		{"exp too large", `{"exp":253402300800}`, Claims{}, ErrMalformed},
		{"exp leading zero", `{"exp":01}`, Claims{}, ErrMalformed},
		{"exp plus", `{"exp":+1}`, Claims{}, ErrMalformed},
		{"exp bool", `{"exp":true}`, Claims{}, ErrMalformed},
		{"iat fraction", `{"iat":1.0}`, Claims{}, ErrMalformed},
		{"nbf exponent", `{"nbf":1E3}`, Claims{}, ErrMalformed},
		{"auth_time string", `{"auth_time":"1"}`, Claims{}, ErrMalformed},
		{"scope array", `{"scope":["a"]}`, Claims{}, ErrMalformed},
		{"jti null", `{"jti":null}`, Claims{}, ErrMalformed},
		{"client_id object", `{"client_id":{}}`, Claims{}, ErrMalformed},
		{"gh_key_id number", `{"gh_key_id":1}`, Claims{}, ErrMalformed},
		{"gh_kind unknown", `{"gh_kind":"root"}`, Claims{}, ErrMalformed},
		{"act sub number", `{"act":{"sub":1}}`, Claims{}, ErrMalformed},
		{"act duplicate", `{"act":{"sub":"a","sub":"b"}}`, Claims{}, ErrMalformed},
		{"act unknown duplicate", `{"act":{"sub":"a","x":1,"x":1}}`, Claims{}, ErrMalformed},
		{"duplicate exp", `{"exp":1,"exp":1}`, Claims{}, ErrMalformed},
		{"duplicate aud", `{"aud":"a","aud":"a"}`, Claims{}, ErrMalformed},
		{"duplicate nested", `{"x":{"a":1,"b":{"c":1,"c":2}}}`, Claims{}, ErrMalformed},
		{"duplicate in array", `{"x":[{"a":1,"a":1}]}`, Claims{}, ErrMalformed},
		{"trailing comma", `{"sub":"s",}`, Claims{}, ErrMalformed},
		{"missing colon", `{"sub" "s"}`, Claims{}, ErrMalformed},
		{"unquoted name", `{sub:"s"}`, Claims{}, ErrMalformed},
		{"single quotes", `{'sub':'s'}`, Claims{}, ErrMalformed},
		{"trailing object", `{}{}`, Claims{}, ErrMalformed},
		{"unterminated", `{"sub":"s"`, Claims{}, ErrMalformed},
		{"array", `[]`, Claims{}, ErrMalformed},
		{"null", `null`, Claims{}, ErrMalformed},
		{"empty", ``, Claims{}, ErrMalformed},
		{"control character", "{\"sub\":\"a\x01\"}", Claims{}, ErrMalformed},
		{"bad escape", `{"sub":"\x"}`, Claims{}, ErrMalformed},
		{"short unicode escape", `{"sub":"\u12"}`, Claims{}, ErrMalformed},
		{"low surrogate first", `{"sub":"\udc00\ud800"}`, Claims{}, ErrMalformed},
		{"high surrogate alone", `{"sub":"\ud800x"}`, Claims{}, ErrMalformed},
		{"invalid UTF-8", "{\"sub\":\"\xc3\x28\"}", Claims{}, ErrMalformed},
		{"deep nesting", `{"x":` + repeat("[", maxDepth+1) + repeat("]", maxDepth+1) + `}`, Claims{}, ErrMalformed},
		{"bad literal", `{"x":nul}`, Claims{}, ErrMalformed},
		{"bad number", `{"x":-}`, Claims{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Claims
			err := parseClaims(tt.in, &got)
			if !errors.Is(err, tt.err) {
				t.Fatalf("parseClaims(%q): got error %v, want %v", tt.in, err, tt.err)
			}
			if err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseClaims(%q): got %+v, want %+v", tt.in, got, tt.want)
			}
			if err == nil {
				// encoding/json agrees on what valid input means.
				var std Claims
				if err := json.Unmarshal([]byte(tt.in), &std); err != nil {
					t.Errorf("encoding/json rejects %q: %v", tt.in, err)
				} else if !reflect.DeepEqual(std, got) {
					t.Errorf("encoding/json: got %+v, want %+v", std, got)
				}
			}
		})
	}
}

func repeat(s string, n int) string {
	b := make([]byte, 0, len(s)*n)
	for range n {
		b = append(b, s...)
	}
	return string(b)
}

// TestAppendClaims checks the fast writer against encoding/json.
func TestAppendClaims(t *testing.T) {
	tests := []Claims{
		{},
		validClaims(),
		{Issuer: "https://a/<b>&c", Subject: "é\u2028\u2029\x00\x1f\"\\\b\f\n\r\t\x7f", Audience: Audience{"a", "b"}, ExpiresAt: 1, IssuedAt: -1,
			NotBefore: 3, AuthTime: 4, ID: "j", ClientID: "c", Scope: "s", Actor: &Actor{Subject: "a", Actor: &Actor{Subject: "", ClientID: "x"}},
			Kind: KindJWT, KeyID: "k"},
		{Subject: "bad utf-8 \xff\xfe end", Audience: Audience{}},
		{Audience: Audience{"only"}},
	}
	for _, c := range tests {
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendClaims(nil, &c); string(got) != string(want) {
			t.Errorf("appendClaims:\n got %s\nwant %s", got, want)
		}
	}
}

func TestAudienceJSON(t *testing.T) {
	tests := []struct {
		aud  Audience
		json string
	}{
		{Audience{"a"}, `"a"`},
		{Audience{"a", "b"}, `["a","b"]`},
		{Audience{}, `[]`},
	}
	for _, tt := range tests {
		got, err := json.Marshal(tt.aud)
		if err != nil || string(got) != tt.json {
			t.Errorf("Marshal(%q): got %s, %v, want %s", tt.aud, got, err, tt.json)
		}
		var back Audience
		if err := json.Unmarshal(got, &back); err != nil || !slices.Equal(back, tt.aud) {
			t.Errorf("Unmarshal(%s): got %q, %v, want %q", got, back, err, tt.aud)
		}
	}
	for _, bad := range []string{`1`, `null`, `[1]`, `{}`, `[] x`, `["a",]`} {
		var a Audience
		if err := json.Unmarshal([]byte(bad), &a); err == nil {
			t.Errorf("Unmarshal(%s): got %q, want an error", bad, a)
		}
	}
}

func TestClaimsPrincipal(t *testing.T) {
	c := validClaims()
	c.Scope = " read  write admin "
	c.ID = "jti-1"
	p := c.Principal()
	want := Principal{
		Subject:   "user-1234",
		ClientID:  "client-abc",
		Scopes:    []string{"read", "write", "admin"},
		Audience:  []string{testAudience},
		Kind:      KindJWT,
		TokenID:   "jti-1",
		ExpiresAt: testNow.Add(15 * time.Minute),
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("Principal: got %+v, want %+v", p, want)
	}
	c.Audience[0] = "changed"
	if p.Audience[0] != testAudience {
		t.Error("Principal shares Audience with the claims")
	}
	for _, tt := range []struct {
		scope string
		want  bool
	}{{"read", true}, {"admin", true}, {"Read", false}, {"rea", false}, {"", false}} {
		if got := p.HasScope(tt.scope); got != tt.want {
			t.Errorf("HasScope(%q): got %v, want %v", tt.scope, got, tt.want)
		}
	}
	c = Claims{Kind: KindAPIKey, KeyID: "k"}
	if p := c.Principal(); p.Kind != KindAPIKey || p.KeyID != "k" || !p.ExpiresAt.IsZero() || p.Scopes != nil {
		t.Errorf("Principal of API key claims: got %+v", p)
	}
}
