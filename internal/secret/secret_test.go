package secret

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewTooShort(t *testing.T) {
	for _, s := range []string{"", "short", strings.Repeat("x", MinLength-1)} {
		if _, err := New([]byte(s)); !errors.Is(err, ErrTooShort) {
			t.Errorf("New(%d bytes): got %v, want ErrTooShort", len(s), err)
		}
	}
	if _, err := New([]byte(strings.Repeat("x", MinLength))); err != nil {
		t.Errorf("New(%d bytes): %v", MinLength, err)
	}
}

func TestLoadGeneratesOnceAndKeeps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	m1, gen, err := Load("", dir)
	if err != nil || !gen {
		t.Fatalf("first Load: generated=%v err=%v, want generated", gen, err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("master.key mode: got %o, want 600", got)
	}
	m2, gen, err := Load("", dir)
	if err != nil || gen {
		t.Fatalf("second Load: generated=%v err=%v, want existing", gen, err)
	}
	if m1.CheckValue() != m2.CheckValue() {
		t.Error("second Load gave another secret")
	}
	if err := m2.Verify(m1.CheckValue()); err != nil {
		t.Errorf("Verify same secret: %v", err)
	}
	m3, _, err := Load(strings.Repeat("e", 40), dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := m3.Verify(m1.CheckValue()); !errors.Is(err, ErrMismatch) {
		t.Errorf("Verify other secret: got %v, want ErrMismatch", err)
	}
}

func TestLoadEmptyFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load("", dir); err == nil {
		t.Fatal("Load with empty master.key: got nil error")
	}
	b, _ := os.ReadFile(filepath.Join(dir, FileName))
	if string(b) != "\n" {
		t.Error("Load overwrote an existing (empty) master.key")
	}
}

func TestDerivePurposesDiffer(t *testing.T) {
	m, _ := New(bytes.Repeat([]byte{1}, 32))
	a := m.Derive(PurposePepper, 32)
	b := m.Derive(PurposeSigningKeys, 32)
	if bytes.Equal(a, b) {
		t.Error("two purposes derived the same key")
	}
	if !bytes.Equal(a, m.Pepper()) {
		t.Error("Derive is not deterministic")
	}
}

func TestSealer(t *testing.T) {
	m, _ := New(bytes.Repeat([]byte{1}, 32))
	other, _ := New(bytes.Repeat([]byte{2}, 32))
	s := m.Sealer(PurposeSigningKeys)
	pt := []byte("private key bytes")
	ct := s.Seal(pt, []byte("kid-1"))
	if bytes.Contains(ct, pt) {
		t.Fatal("ciphertext contains the plaintext")
	}
	got, err := s.Open(ct, []byte("kid-1"))
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Open: got %q, %v", got, err)
	}
	tampered := bytes.Clone(ct)
	tampered[len(tampered)-1] ^= 1
	cases := []struct {
		name   string
		s      *Sealer
		ct, ad []byte
	}{
		{"wrong additional data", s, ct, []byte("kid-2")},
		{"tampered", s, tampered, []byte("kid-1")},
		{"other master", other.Sealer(PurposeSigningKeys), ct, []byte("kid-1")},
		{"other purpose", m.Sealer(PurposePepper), ct, []byte("kid-1")},
		{"truncated", s, ct[:10], []byte("kid-1")},
		{"empty", s, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.s.Open(c.ct, c.ad); !errors.Is(err, ErrOpen) {
				t.Errorf("got %v, want ErrOpen", err)
			}
		})
	}
}

func TestHasher(t *testing.T) {
	if _, err := NewHasher(make([]byte, 16)); err == nil {
		t.Error("NewHasher with a 16-byte pepper: got nil error")
	}
	h, err := NewHasher(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	stored := h.Hash("client", "s3cret")
	if len(stored) != 32 {
		t.Errorf("hash length: got %d, want 32", len(stored))
	}
	if !h.Equal("client", "s3cret", stored) {
		t.Error("Equal(same) = false")
	}
	if h.Equal("client", "s3creT", stored) {
		t.Error("Equal(other secret) = true")
	}
	if h.Equal("refresh", "s3cret", stored) {
		t.Error("Equal(other domain) = true")
	}
	h2, _ := NewHasher(bytes.Repeat([]byte{8}, 32))
	if h2.Equal("client", "s3cret", stored) {
		t.Error("Equal under another pepper = true")
	}
}

func TestRandomString(t *testing.T) {
	a, b := RandomString(32), RandomString(32)
	if len(a) != 43 {
		t.Errorf("len: got %d, want 43", len(a))
	}
	if a == b {
		t.Error("two random strings are equal")
	}
}
