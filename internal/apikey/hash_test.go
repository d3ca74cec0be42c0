package apikey

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
)

func testPepper(b byte) []byte { return bytes.Repeat([]byte{b}, MinPepperLen) }

func TestNewHasherShortPepper(t *testing.T) {
	for _, n := range []int{0, 16, MinPepperLen - 1} {
		if _, err := NewHasher(make([]byte, n)); !errors.Is(err, ErrShortPepper) {
			t.Errorf("NewHasher(%d bytes) error = %v, want ErrShortPepper", n, err)
		}
	}
	if _, err := NewHasher(make([]byte, MinPepperLen)); err != nil {
		t.Errorf("NewHasher(%d bytes) error = %v, want nil", MinPepperLen, err)
	}
}

// TestHashIsDomainSeparatedHMAC computes the expected value independently:
// HMAC-SHA-256(pepper, "apikey" || 0x00 || key), the construction
// internal/secret uses with domain "apikey".
func TestHashIsDomainSeparatedHMAC(t *testing.T) {
	pepper := testPepper(7)
	h, err := NewHasher(pepper)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range []Format{{}, {Env: EnvTest}, {Prefix: "acme"}} {
		pt := newTestKey(t, f, string(rune(i))).Plaintext()
		mac := hmac.New(sha256.New, pepper)
		mac.Write([]byte("apikey"))
		mac.Write([]byte{0})
		mac.Write([]byte(pt))
		want := mac.Sum(nil)
		got := h.Hash(pt)
		if !bytes.Equal(got, want) {
			t.Errorf("Hash = %x, want %x", got, want)
		}
		if len(got) != HashLen {
			t.Errorf("len(Hash) = %d, want %d", len(got), HashLen)
		}
	}
}

func TestHasherEqual(t *testing.T) {
	pepper := testPepper(1)
	h, err := NewHasher(pepper)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewHasher(testPepper(2))
	if err != nil {
		t.Fatal(err)
	}
	k := newTestKey(t, Format{}, "equal").Plaintext()
	k2 := newTestKey(t, Format{}, "other").Plaintext()
	stored := h.Hash(k)
	pepper[0] ^= 1 // NewHasher must have copied the pepper
	tests := []struct {
		name   string
		h      *Hasher
		key    string
		stored []byte
		want   bool
	}{
		{"same key", h, k, stored, true},
		{"other key", h, k2, stored, false},
		{"one character changed", h, replaceAt(k, 30, otherChar(k[30])), stored, false},
		{"other pepper", other, k, stored, false},
		{"truncated hash", h, k, stored[:HashLen-1], false},
		{"empty hash", h, k, nil, false},
		{"longer hash", h, k, append(append([]byte(nil), stored...), 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.h.Equal(tt.key, tt.stored); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHasherConcurrent(t *testing.T) {
	h, err := NewHasher(testPepper(3))
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 8)
	want := make([][]byte, len(keys))
	for i := range keys {
		keys[i] = newTestKey(t, Format{}, string(rune(i))).Plaintext()
		want[i] = h.Hash(keys[i])
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				j := (g + i) % len(keys)
				if got := h.Hash(keys[j]); !bytes.Equal(got, want[j]) {
					t.Errorf("concurrent Hash(key %d) = %x, want %x", j, got, want[j])
					return
				}
				if !h.Equal(keys[j], want[j]) {
					t.Errorf("concurrent Equal(key %d) = false, want true", j)
					return
				}
			}
		})
	}
	wg.Wait()
}
