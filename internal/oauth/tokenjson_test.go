package oauth

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestTokenResponseJSON checks that the hand-written encoding of token
// responses is encoding/json's, byte for byte, and that writeTokenResponse
// sends writeJSON's headers.
func TestTokenResponseJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		resp tokenResponse
	}{
		{"client credentials", tokenResponse{AccessToken: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", TokenType: "Bearer", ExpiresIn: 3600, Scope: "read write"}},
		{"no scope", tokenResponse{AccessToken: "gho_abc", TokenType: "Bearer", ExpiresIn: 60}},
		{"code grant", tokenResponse{AccessToken: "a.b.c", TokenType: "Bearer", ExpiresIn: 300, Scope: "openid profile",
			RefreshToken: "r-_0", IDToken: "x.y.z"}},
		{"id token without refresh", tokenResponse{AccessToken: "a", TokenType: "Bearer", IDToken: "i"}},
		{"negative and zero", tokenResponse{ExpiresIn: -5}},
		{"escapes", tokenResponse{AccessToken: "\"\\\n\r\t\b\f\x00\x1f\x7f<>&", TokenType: "é☃\u2028\u2029😀", Scope: "bad \xff\xfe utf8 \xe2\x80"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal(tc.resp)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.resp.appendJSON(nil); !bytes.Equal(got, want) {
				t.Errorf("appendJSON = %s\nwant        %s", got, want)
			}
			rec := httptest.NewRecorder()
			writeTokenResponse(rec, &tc.resp)
			ref := httptest.NewRecorder()
			writeJSON(ref, http.StatusOK, tc.resp)
			if rec.Code != ref.Code || !bytes.Equal(rec.Body.Bytes(), ref.Body.Bytes()) {
				t.Errorf("writeTokenResponse: %d %s, want %d %s", rec.Code, rec.Body, ref.Code, ref.Body)
			}
			for _, h := range []string{"Content-Type", "Cache-Control", "Pragma"} {
				if got, want := rec.Header().Get(h), ref.Header().Get(h); got != want {
					t.Errorf("%s = %q, want %q", h, got, want)
				}
			}
		})
	}
}

// FuzzTokenResponseJSON checks appendJSON against encoding/json for any
// strings, including invalid UTF-8.
func FuzzTokenResponseJSON(f *testing.F) {
	f.Add("eyJ.eyJ.sig", "Bearer", int64(3600), "openid", "rt", "id")
	f.Add("<&>\u2028", "\x00\xff", int64(-1), "", "", "\"\\")
	f.Fuzz(func(t *testing.T, at, tt string, exp int64, scope, rt, idt string) {
		r := tokenResponse{AccessToken: at, TokenType: tt, ExpiresIn: exp, Scope: scope, RefreshToken: rt, IDToken: idt}
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.appendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("appendJSON(%+v) = %s, want %s", r, got, want)
		}
	})
}
