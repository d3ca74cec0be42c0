package apikey

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
)

// MinPepperLen is the minimum length, in bytes, of a [Hasher]'s pepper.
const MinPepperLen = 32

// HashLen is the length of a key hash.
const HashLen = sha256.Size

// hashDomain separates API-key hashes from other secrets hashed under the
// same pepper. With it, Hash(k) equals secret.Hasher.Hash("apikey", k).
const hashDomain = "apikey\x00"

// ErrShortPepper means the pepper given to NewHasher is shorter than
// MinPepperLen.
var ErrShortPepper = errors.New("apikey: pepper too short")

// Hasher computes the value stored for a key: HMAC-SHA-256 of the whole key
// under a server-side pepper. It is safe for concurrent use.
//
// Why a fast keyed hash and not bcrypt or argon2: those are slow on purpose
// so that guessing a low-entropy password costs the attacker dearly. An API
// key's secret has about 190 random bits; nobody can guess it at any hash
// speed, so a slow hash would buy nothing and cost tens of milliseconds of
// CPU per request. HMAC takes about a microsecond. The pepper (kept
// out of the database) means a stolen database alone cannot even be used to
// test candidate keys offline.
type Hasher struct {
	macs sync.Pool // of hash.Hash, each an HMAC keyed with the pepper
}

// NewHasher returns a Hasher keyed with pepper, which must be at least
// MinPepperLen bytes; the error wraps ErrShortPepper. The pepper is copied.
func NewHasher(pepper []byte) (*Hasher, error) {
	if len(pepper) < MinPepperLen {
		return nil, fmt.Errorf("%w: need %d bytes, got %d", ErrShortPepper, MinPepperLen, len(pepper))
	}
	key := append([]byte(nil), pepper...)
	h := &Hasher{}
	h.macs.New = func() any { return hmac.New(sha256.New, key) }
	return h, nil
}

// Hash returns the HashLen-byte keyed hash of the plaintext key. Store this,
// never the key.
func (h *Hasher) Hash(plaintext string) []byte {
	return h.sum(make([]byte, 0, HashLen), plaintext)
}

// Equal reports whether plaintext hashes to stored. The comparison takes
// the same time wherever the hashes differ.
func (h *Hasher) Equal(plaintext string, stored []byte) bool {
	var buf [HashLen]byte
	return subtle.ConstantTimeCompare(h.sum(buf[:0], plaintext), stored) == 1
}

func (h *Hasher) sum(dst []byte, plaintext string) []byte {
	mac := h.macs.Get().(hash.Hash)
	mac.Reset()
	io.WriteString(mac, hashDomain)
	io.WriteString(mac, plaintext)
	dst = mac.Sum(dst)
	h.macs.Put(mac)
	return dst
}
