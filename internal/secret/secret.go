// Package secret holds Gatehouse's master secret and everything derived
// from it: per-purpose keys (HKDF-SHA-256), AES-GCM sealing of data at rest,
// and the keyed hash used for high-entropy generated secrets.
//
// The master secret is never used directly. Each purpose gets its own key,
// so a key used to encrypt signing keys can never be confused with the
// pepper used to hash client secrets.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// MinLength is the minimum length, in bytes, of a master secret given by
// the operator (GATEHOUSE_SECRET).
const MinLength = 32

// FileName is the name of the generated master-secret file in the data
// directory, used when GATEHOUSE_SECRET is not set.
const FileName = "master.key"

// Purposes for [Master.Derive]. Each names one use of a derived key.
const (
	PurposeSigningKeys = "gatehouse signing-keys v1"
	PurposePepper      = "gatehouse pepper v1"
	PurposeCheck       = "gatehouse master-check v1"
)

// Errors callers branch on.
var (
	// ErrTooShort means the master secret given by the operator is shorter
	// than MinLength.
	ErrTooShort = errors.New("secret: master secret too short")
	// ErrMismatch means the master secret is not the one the store was
	// initialised with.
	ErrMismatch = errors.New("secret: master secret does not match the store")
	// ErrOpen means sealed data could not be decrypted: it was tampered
	// with, or sealed under another key.
	ErrOpen = errors.New("secret: cannot open sealed data")
)

// Master is the master secret. Its zero value is not usable; get one from
// [New] or [Load].
type Master struct {
	key []byte
}

// New returns a Master for the given secret, which must be at least
// MinLength bytes long.
func New(s []byte) (*Master, error) {
	if len(s) < MinLength {
		return nil, fmt.Errorf("%w: need at least %d bytes, got %d", ErrTooShort, MinLength, len(s))
	}
	prk, err := hkdf.Extract(sha256.New, s, []byte("gatehouse"))
	if err != nil {
		return nil, fmt.Errorf("secret: extract: %w", err)
	}
	return &Master{key: prk}, nil
}

// Load returns the master secret. If env is non-empty it is the secret (as
// set in GATEHOUSE_SECRET). Otherwise the secret is read from FileName in
// dataDir, and generated there (256 random bits, mode 0600) if the file does
// not exist; generated reports whether that happened, so the caller can warn
// that production deployments should set the secret explicitly.
func Load(env, dataDir string) (m *Master, generated bool, err error) {
	if env != "" {
		m, err := New([]byte(env))
		return m, false, err
	}
	path := filepath.Join(dataDir, FileName)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		s := strings.TrimSpace(string(b))
		if s == "" {
			return nil, false, fmt.Errorf("secret: %s is empty; restore it from a backup or set GATEHOUSE_SECRET", path)
		}
		m, err := New([]byte(s))
		if err != nil {
			return nil, false, fmt.Errorf("secret: %s: %w", path, err)
		}
		return m, false, nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, false, fmt.Errorf("secret: read %s: %w", path, err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("secret: create data dir: %w", err)
	}
	s := RandomString(32)
	// O_EXCL: never overwrite a secret another process just wrote.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return Load("", dataDir)
	}
	if err != nil {
		return nil, false, fmt.Errorf("secret: create %s: %w", path, err)
	}
	if _, err := f.WriteString(s + "\n"); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("secret: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("secret: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, false, fmt.Errorf("secret: close %s: %w", path, err)
	}
	m, err = New([]byte(s))
	return m, true, err
}

// Derive returns n bytes of key material for purpose.
func (m *Master) Derive(purpose string, n int) []byte {
	k, err := hkdf.Expand(sha256.New, m.key, purpose, n)
	if err != nil {
		// Only possible for n > 255*32, a programming error.
		panic("secret: derive: " + err.Error())
	}
	return k
}

// CheckValue returns a value that identifies this master secret without
// revealing it. The store keeps it so that a server started with another
// secret refuses to run instead of failing to decrypt later.
func (m *Master) CheckValue() string {
	return base64.RawURLEncoding.EncodeToString(m.Derive(PurposeCheck, 32))
}

// Verify compares a stored check value with this secret's, in constant time.
// It returns ErrMismatch if they differ.
func (m *Master) Verify(stored string) error {
	if subtle.ConstantTimeCompare([]byte(stored), []byte(m.CheckValue())) != 1 {
		return ErrMismatch
	}
	return nil
}

// Pepper returns the server-side key for HMAC-SHA-256 hashing of generated
// secrets (client secrets, API keys, refresh tokens, codes).
func (m *Master) Pepper() []byte {
	return m.Derive(PurposePepper, 32)
}

// Sealer returns an AES-256-GCM sealer keyed for purpose.
func (m *Master) Sealer(purpose string) *Sealer {
	block, err := aes.NewCipher(m.Derive(purpose, 32))
	if err != nil {
		panic("secret: aes: " + err.Error()) // 32-byte key: cannot fail
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("secret: gcm: " + err.Error())
	}
	return &Sealer{aead: aead}
}

// Sealer encrypts and authenticates small values at rest with AES-GCM and a
// random nonce. It is safe for concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

// Seal encrypts plaintext. The additional data binds the ciphertext to its
// context (for example a key id), so a sealed value moved to another row
// does not open.
func (s *Sealer) Seal(plaintext, additional []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("secret: rand: " + err.Error())
	}
	return s.aead.Seal(nonce, nonce, plaintext, additional)
}

// Open decrypts a value made by Seal with the same additional data. It
// returns ErrOpen if the value was altered or sealed under another key.
func (s *Sealer) Open(sealed, additional []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrOpen
	}
	pt, err := s.aead.Open(nil, sealed[:n], sealed[n:], additional)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// RandomString returns n random bytes from crypto/rand, base64url-encoded
// without padding: 32 bytes give 256 bits in 43 URL-safe characters.
func RandomString(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never returns an error; crashes the program on failure
	return base64.RawURLEncoding.EncodeToString(b)
}

// Hasher computes the keyed hash (HMAC-SHA-256 under the server pepper) of
// high-entropy generated secrets. A slow password hash buys nothing for a
// 256-bit random value — nobody can guess it — and would cost tens of
// milliseconds per request; the pepper means a stolen database alone is not
// enough to test candidate secrets offline.
type Hasher struct {
	pepper []byte
	pool   sync.Pool // of *keyedMAC
}

// keyedMAC is a reusable HMAC under the pepper, with a buffer for its
// input.
type keyedMAC struct {
	mac hash.Hash
	in  []byte
}

// NewHasher returns a Hasher keyed with pepper, which must be at least 32
// bytes.
func NewHasher(pepper []byte) (*Hasher, error) {
	if len(pepper) < 32 {
		return nil, fmt.Errorf("%w: pepper needs 32 bytes", ErrTooShort)
	}
	return &Hasher{pepper: pepper}, nil
}

// Hash returns the 32-byte keyed hash of s, with domain separating the kinds
// of secret (so a client secret's hash never matches a refresh token's).
func (h *Hasher) Hash(domain, s string) []byte {
	return h.appendHash(make([]byte, 0, sha256.Size), domain, s)
}

// Equal reports whether s hashes to stored, in constant time.
func (h *Hasher) Equal(domain, s string, stored []byte) bool {
	var buf [sha256.Size]byte
	return hmac.Equal(h.appendHash(buf[:0], domain, s), stored)
}

// appendHash appends the keyed hash of s in domain to dst. The HMAC
// state is pooled: a client-credentials grant or an API-key check hashes
// a secret on every request.
func (h *Hasher) appendHash(dst []byte, domain, s string) []byte {
	k, _ := h.pool.Get().(*keyedMAC)
	if k == nil {
		k = &keyedMAC{mac: hmac.New(sha256.New, h.pepper)}
	}
	k.in = append(append(append(k.in[:0], domain...), 0), s...)
	k.mac.Reset()
	k.mac.Write(k.in)
	dst = k.mac.Sum(dst)
	// The input is a secret: wipe it. A huge input's buffer is not kept.
	clear(k.in)
	if cap(k.in) <= 4096 {
		h.pool.Put(k)
	}
	return dst
}
