package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestJWKSRoundTrip(t *testing.T) {
	var keys []PublicKey
	for _, alg := range algorithms {
		keys = append(keys, newSigningKey(t, alg).Public())
	}
	doc, err := MarshalJWKS(keys...)
	if err != nil {
		t.Fatal(err)
	}
	var set JWKS
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	for _, j := range set.Keys {
		if j.Use != "sig" || j.KeyID == "" || j.Algorithm == "" {
			t.Errorf("JWK %+v: want use sig, kid and alg", j)
		}
	}
	got, err := ParseJWKS(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(keys) {
		t.Fatalf("ParseJWKS: got %d keys, want %d", len(got), len(keys))
	}
	for i, k := range got {
		want := keys[i]
		eq, ok := k.Key.(interface{ Equal(crypto.PublicKey) bool })
		if k.ID != want.ID || k.Algorithm != want.Algorithm || !ok || !eq.Equal(want.Key) {
			t.Errorf("key %d: got %+v, want %+v", i, k, want)
		}
	}
	if doc, err := MarshalJWKS(); err != nil || string(doc) != `{"keys":[]}` {
		t.Errorf("MarshalJWKS(): got %s, %v", doc, err)
	}
	if _, err := MarshalJWKS(keys[0], keys[0]); err == nil {
		t.Error("MarshalJWKS with a repeated kid: got nil error")
	}
	if _, err := MarshalJWKS(PublicKey{ID: "x", Algorithm: ES256, Key: keys[2].Key}); err == nil {
		t.Error("MarshalJWKS with a mismatched key: got nil error")
	}
}

// jwkJSON returns the JWK of k as a JSON object with members changed:
// a value of "" removes the member, other values are raw JSON.
func jwkJSON(t *testing.T, k PublicKey, change map[string]string) string {
	t.Helper()
	b, err := json.Marshal(k.JWK())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for name, v := range change {
		if v == "" {
			delete(m, name)
		} else {
			m[name] = json.RawMessage(v)
		}
	}
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseJWKS(t *testing.T) {
	es := newSigningKey(t, ES256).Public()
	rs := newSigningKey(t, RS256).Public()
	ed := newSigningKey(t, EdDSA).Public()
	ecPub := es.Key.(*ecdsa.PublicKey)
	rsPub := rs.Key.(*rsa.PublicKey)
	set := func(keys ...string) string { return `{"keys":[` + strings.Join(keys, ",") + `]}` }
	q := func(s string) string { return `"` + s + `"` }
	point, err := ecPub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	offCurveY := slices.Clone(point[33:])
	offCurveY[31] ^= 1

	tests := []struct {
		name string
		doc  string
		want []string // key ids returned
		err  bool
	}{
		{"all types", set(jwkJSON(t, es, nil), jwkJSON(t, rs, nil), jwkJSON(t, ed, nil)), []string{es.ID, rs.ID, ed.ID}, false},
		{"empty", `{"keys":[]}`, nil, false},
		{"other members", `{"keys":[],"x":{"y":1}}`, nil, false},
		{"alg inferred", set(jwkJSON(t, es, map[string]string{"alg": ""}), jwkJSON(t, rs, map[string]string{"alg": ""}), jwkJSON(t, ed, map[string]string{"alg": ""})), []string{es.ID, rs.ID, ed.ID}, false},
		{"use absent", set(jwkJSON(t, es, map[string]string{"use": ""})), []string{es.ID}, false},
		{"extra members", set(jwkJSON(t, es, map[string]string{"key_ops": `["verify"]`, "x5t": `"abc"`})), []string{es.ID}, false},
		{"skip use enc", set(jwkJSON(t, es, map[string]string{"use": q("enc")}), jwkJSON(t, ed, nil)), []string{ed.ID}, false},
		{"skip no kid", set(jwkJSON(t, es, map[string]string{"kid": ""})), nil, false},
		{"skip unsupported alg", set(jwkJSON(t, rs, map[string]string{"alg": q("PS256")}), jwkJSON(t, es, map[string]string{"alg": q("ES384")})), nil, false},
		{"skip other curve", set(`{"kty":"EC","kid":"p384","crv":"P-384","x":"AA","y":"AA"}`, `{"kty":"OKP","kid":"x","crv":"X25519","x":"AA"}`), nil, false},
		{"skip unknown kty", set(`{"kty":"PQ","kid":"pq"}`), nil, false},
		{"not an object", `[]`, nil, true},
		{"no keys", `{}`, nil, true},
		{"keys not array", `{"keys":{}}`, nil, true},
		{"key not object", `{"keys":[1]}`, nil, true},
		{"trailing data", `{"keys":[]} x`, nil, true},
		{"duplicate keys member", `{"keys":[],"keys":[]}`, nil, true},
		{"duplicate key member", set(strings.Replace(jwkJSON(t, es, nil), "{", `{"kid":"x",`, 1)), nil, true},
		{"repeated kid", set(jwkJSON(t, es, nil), jwkJSON(t, ed, map[string]string{"kid": q(es.ID)})), nil, true},
		{"private d", set(jwkJSON(t, es, map[string]string{"d": q("AAAA")})), nil, true},
		{"private d in skipped key", set(jwkJSON(t, es, map[string]string{"d": q("AAAA"), "use": q("enc")})), nil, true},
		{"private p", set(jwkJSON(t, rs, map[string]string{"p": q("AAAA")})), nil, true},
		{"symmetric k", set(`{"kty":"oct","kid":"h","k":"AAAA"}`), nil, true},
		{"no kty", set(jwkJSON(t, es, map[string]string{"kty": ""})), nil, true},
		{"alg contradicts kty", set(jwkJSON(t, es, map[string]string{"alg": q("RS256")})), nil, true},
		{"RSA with ES256", set(jwkJSON(t, rs, map[string]string{"alg": q("ES256")})), nil, true},
		{"OKP with ES256", set(jwkJSON(t, ed, map[string]string{"alg": q("ES256")})), nil, true},
		{"oct with ES256", set(`{"kty":"oct","kid":"h","alg":"ES256"}`), nil, true},
		{"ES256 on P-384", set(jwkJSON(t, es, map[string]string{"crv": q("P-384")})), nil, true},
		{"EdDSA on X25519", set(jwkJSON(t, ed, map[string]string{"crv": q("X25519")})), nil, true},
		{"point not on curve", set(jwkJSON(t, es, map[string]string{"y": q(b64.EncodeToString(offCurveY))})), nil, true},
		{"short x", set(jwkJSON(t, es, map[string]string{"x": q(b64.EncodeToString(point[2:33]))})), nil, true},
		{"padded x", set(jwkJSON(t, ed, map[string]string{"x": q(b64.EncodeToString(ed.Key.(ed25519.PublicKey)) + "=")})), nil, true},
		{"escaped newline in x", set(jwkJSON(t, ed, map[string]string{"x": q(b64.EncodeToString(ed.Key.(ed25519.PublicKey))[:10] + `\n` + b64.EncodeToString(ed.Key.(ed25519.PublicKey))[10:])})), nil, true},
		{"short Ed25519", set(jwkJSON(t, ed, map[string]string{"x": q("AAAA")})), nil, true},
		{"RSA 1024", set(jwkJSON(t, rs, map[string]string{"n": q(b64.EncodeToString(rsPub.N.Bytes()[:128]))})), nil, true},
		{"RSA even e", set(jwkJSON(t, rs, map[string]string{"e": q("AQAA")})), nil, true},
		{"RSA huge e", set(jwkJSON(t, rs, map[string]string{"e": q("AQAAAAAB")})), nil, true},
		{"RSA no e", set(jwkJSON(t, rs, map[string]string{"e": ""})), nil, true},
		{"kid not a string", set(jwkJSON(t, es, map[string]string{"kid": "1"})), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := ParseJWKS([]byte(tt.doc))
			if tt.err {
				if err == nil {
					t.Fatalf("ParseJWKS: got %d keys, want an error", len(keys))
				}
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("ParseJWKS: got %v, want %v", err, ErrMalformed)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseJWKS: got %v, want nil", err)
			}
			var ids []string
			for _, k := range keys {
				ids = append(ids, k.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.want) {
				t.Errorf("ParseJWKS: got ids %v, want %v", ids, tt.want)
			}
		})
	}
}
