package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"io"
	"math/big"
	"testing"
)

func TestSignatureConversion(t *testing.T) {
	k := newSigner(t, ES256).(*ecdsa.PrivateKey)
	for i := range 200 {
		h := sha256.Sum256([]byte{byte(i)})
		der, err := ecdsa.SignASN1(rand.Reader, k, h[:])
		if err != nil {
			t.Fatal(err)
		}
		var raw [64]byte
		if !derToRaw(&raw, der) {
			t.Fatalf("derToRaw(%x): not ok", der)
		}
		if back := rawToDER(nil, raw[:]); string(back) != string(der) {
			t.Fatalf("rawToDER(derToRaw(%x)): got %x", der, back)
		}
	}
	// Small r and s: leading zeros and high bits.
	for _, tt := range []struct{ r, s string }{{"1", "ff"}, {"80", "7f"}, {"0", "0"}} {
		r, _ := new(big.Int).SetString(tt.r, 16)
		s, _ := new(big.Int).SetString(tt.s, 16)
		raw := make([]byte, 64)
		r.FillBytes(raw[:32])
		s.FillBytes(raw[32:])
		der := rawToDER(nil, raw)
		var got [64]byte
		if ok := derToRaw(&got, der); !ok || string(got[:]) != string(raw) {
			t.Errorf("round trip of r=%s s=%s: got %x, %v via %x", tt.r, tt.s, got, ok, der)
		}
	}
	for _, bad := range [][]byte{
		nil,
		{0x30, 0x00},
		{0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01},
		{0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01},                                            // negative
		{0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01},                                      // not minimal
		{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00},                                      // trailing byte
		{0x30, 0x05, 0x02, 0x01, 0x01, 0x02, 0x01},                                                  // short
		append(append([]byte{0x30, 0x26, 0x02, 0x21, 0x01}, make([]byte, 32)...), 0x02, 0x01, 0x01), // r of 33 bytes
	} {
		var got [64]byte
		if ok := derToRaw(&got, bad); ok {
			t.Errorf("derToRaw(%x): got %x, want not ok", bad, got)
		}
	}
}

func TestCheckPublic(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	es := newSigner(t, ES256).Public()
	rs := newSigner(t, RS256).Public().(*rsa.PublicKey)
	ed := newSigner(t, EdDSA).Public()
	//lint:ignore SA1019 only the raw coordinates can make a point that is not on the curve
	offCurve := &ecdsa.PublicKey{Curve: elliptic.P256(), X: big.NewInt(1), Y: big.NewInt(1)}
	tests := []struct {
		name string
		key  PublicKey
		ok   bool
	}{
		{"ES256", PublicKey{ID: "a", Algorithm: ES256, Key: es}, true},
		{"RS256", PublicKey{ID: "a", Algorithm: RS256, Key: rs}, true},
		{"EdDSA", PublicKey{ID: "a", Algorithm: EdDSA, Key: ed}, true},
		{"empty id", PublicKey{Algorithm: ES256, Key: es}, false},
		{"unknown alg", PublicKey{ID: "a", Algorithm: "HS256", Key: es}, false},
		{"ES256 with Ed25519 key", PublicKey{ID: "a", Algorithm: ES256, Key: ed}, false},
		{"EdDSA with EC key", PublicKey{ID: "a", Algorithm: EdDSA, Key: es}, false},
		{"RS256 with EC key", PublicKey{ID: "a", Algorithm: RS256, Key: es}, false},
		{"P-384", PublicKey{ID: "a", Algorithm: ES256, Key: &p384.PublicKey}, false},
		{"point not on curve", PublicKey{ID: "a", Algorithm: ES256, Key: offCurve}, false},
		{"nil EC key", PublicKey{ID: "a", Algorithm: ES256, Key: (*ecdsa.PublicKey)(nil)}, false},
		{"RSA 1024", PublicKey{ID: "a", Algorithm: RS256, Key: &small.PublicKey}, false},
		{"RSA even exponent", PublicKey{ID: "a", Algorithm: RS256, Key: &rsa.PublicKey{N: rs.N, E: 65536}}, false},
		{"RSA exponent 1", PublicKey{ID: "a", Algorithm: RS256, Key: &rsa.PublicKey{N: rs.N, E: 1}}, false},
		{"short Ed25519", PublicKey{ID: "a", Algorithm: EdDSA, Key: ed25519.PublicKey(make([]byte, 31))}, false},
		{"private key", PublicKey{ID: "a", Algorithm: EdDSA, Key: newSigner(t, EdDSA)}, false},
		{"nil key", PublicKey{ID: "a", Algorithm: ES256}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.key.check()
			if (err == nil) != tt.ok {
				t.Errorf("check: got %v, want ok=%v", err, tt.ok)
			}
			if _, err := NewStaticKeySet(tt.key); (err == nil) != tt.ok {
				t.Errorf("NewStaticKeySet: got %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestStaticKeySet(t *testing.T) {
	a, b := newSigningKey(t, ES256), newSigningKey(t, EdDSA)
	ks, err := NewStaticKeySet(a.Public(), b.Public())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ks.Key(bg, b.ID); err != nil || got.Algorithm != EdDSA {
		t.Errorf("Key(%q): got %v, %v, want the EdDSA key", b.ID, got, err)
	}
	if _, err := ks.Key(bg, "nope"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Key(nope): got %v, want %v", err, ErrUnknownKey)
	}
	if got := len(ks.Keys()); got != 2 {
		t.Errorf("Keys: got %d keys, want 2", got)
	}
	if _, err := NewStaticKeySet(a.Public(), a.Public()); err == nil {
		t.Error("NewStaticKeySet with a repeated kid: got nil error")
	}
}

// failingSigner returns a fixed signature or error.
type failingSigner struct {
	crypto.Signer
	sig []byte
	err error
}

func (s failingSigner) Sign(_ io.Reader, _ []byte, _ crypto.SignerOpts) ([]byte, error) {
	return s.sig, s.err
}

func TestSign(t *testing.T) {
	es := newSigningKey(t, ES256)
	tests := []struct {
		name string
		key  SigningKey
	}{
		{"no signer", SigningKey{ID: "a", Algorithm: ES256}},
		{"no id", SigningKey{Algorithm: ES256, Signer: es.Signer}},
		{"alg mismatch", SigningKey{ID: "a", Algorithm: EdDSA, Signer: es.Signer}},
		{"HS256", SigningKey{ID: "a", Algorithm: "HS256", Signer: es.Signer}},
		{"signer error", SigningKey{ID: "a", Algorithm: ES256, Signer: failingSigner{Signer: es.Signer, err: errors.New("hsm down")}}},
		{"signer returns garbage", SigningKey{ID: "a", Algorithm: ES256, Signer: failingSigner{Signer: es.Signer, sig: []byte{1, 2, 3}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tok, err := Sign(tt.key, "JWT", map[string]string{"a": "b"}); err == nil {
				t.Errorf("Sign: got %q, nil, want an error", tok)
			}
		})
	}
	t.Run("bad claims", func(t *testing.T) {
		for _, claims := range []any{[]int{1}, make(chan int), "str"} {
			if tok, err := Sign(es, "JWT", claims); err == nil {
				t.Errorf("Sign(%T): got %q, nil, want an error", claims, tok)
			}
		}
	})
}
