package apikey

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// Defaults and sizes of the key format.
const (
	// DefaultPrefix is the prefix used when Format.Prefix is empty.
	DefaultPrefix = "gk"
	// EnvLive is the environment of production keys, and the default.
	EnvLive = "live"
	// EnvTest is the environment of keys for testing and staging.
	EnvTest = "test"
	// IDLen is the length of a key's public ID in base62 characters.
	IDLen = 12
	// SecretLen is the length of a key's secret part in base62 characters
	// (32 × log2(62) ≈ 190.5 bits).
	SecretLen = 32
)

const (
	minPrefixLen = 2
	maxPrefixLen = 8
	envLen       = 4 // len(EnvLive) == len(EnvTest)
	bodyLen      = IDLen + SecretLen + checksumLen
	// maxKeyLen is the length of a key with the longest prefix.
	maxKeyLen = maxPrefixLen + 1 + envLen + 1 + bodyLen
)

// ErrInvalidFormat means a Format's prefix or environment is not allowed.
var ErrInvalidFormat = errors.New("apikey: invalid format")

// Format describes the keys of one deployment and environment. The zero
// value means prefix "gk" and environment "live". A Format is a plain value,
// safe to copy and to use concurrently.
type Format struct {
	// Prefix names the kind of key: 2 to 8 lowercase ASCII letters or
	// digits. Empty means DefaultPrefix.
	Prefix string
	// Env is EnvLive or EnvTest. Empty means EnvLive.
	Env string
}

func (f Format) prefix() string {
	if f.Prefix == "" {
		return DefaultPrefix
	}
	return f.Prefix
}

func (f Format) env() string {
	if f.Env == "" {
		return EnvLive
	}
	return f.Env
}

// Validate reports whether f has an allowed prefix and environment. The
// error wraps ErrInvalidFormat.
func (f Format) Validate() error {
	if !validPrefix(f.prefix()) {
		return fmt.Errorf("%w: prefix %q must be %d to %d lowercase letters or digits",
			ErrInvalidFormat, f.Prefix, minPrefixLen, maxPrefixLen)
	}
	if e := f.env(); e != EnvLive && e != EnvTest {
		return fmt.Errorf("%w: environment %q must be %q or %q", ErrInvalidFormat, f.Env, EnvLive, EnvTest)
	}
	return nil
}

// Len returns the length of every key of this format.
func (f Format) Len() int {
	return len(f.prefix()) + 1 + len(f.env()) + 1 + bodyLen
}

// Generate returns a new key with a random ID and secret from crypto/rand.
// The plaintext ([Key.Plaintext]) is meant to be shown once, to the owner,
// and stored only as a [Hasher.Hash].
func (f Format) Generate() (Key, error) {
	return f.generate(rand.Reader)
}

func (f Format) generate(r io.Reader) (Key, error) {
	if err := f.Validate(); err != nil {
		return Key{}, err
	}
	var random [IDLen + SecretLen]byte
	if err := randomBase62(r, random[:]); err != nil {
		return Key{}, fmt.Errorf("apikey: random: %w", err)
	}
	return f.assemble(string(random[:IDLen]), string(random[IDLen:])), nil
}

// assemble builds the key with the given ID and secret, adding the
// checksum. Both must be base62 of the right length.
func (f Format) assemble(id, secret string) Key {
	p, e := f.prefix(), f.env()
	b := make([]byte, 0, f.Len())
	b = append(b, p...)
	b = append(b, '_')
	b = append(b, e...)
	b = append(b, '_')
	b = append(b, id...)
	b = append(b, secret...)
	b = appendChecksum(b, crc(b))
	s := string(b)
	return newKey(s, len(p), len(e))
}

// Parse checks that s is a well-formed key of this format and returns its
// parts. It checks, in order: the prefix (ErrPrefix), the environment
// (ErrEnv, if s is a key for the other environment), the length
// (ErrLength), the alphabet (ErrAlphabet) and the checksum (ErrChecksum).
// A nil error says only that s could be a key; whether it is one is for the
// store to say, by ID and [Hasher.Equal].
//
// Parse does not allocate, and rejects a malformed string in tens of
// nanoseconds. Its errors never contain any part of s.
func (f Format) Parse(s string) (Key, error) {
	if err := f.Validate(); err != nil {
		return Key{}, err
	}
	p, e := f.prefix(), f.env()
	n := len(p)
	if len(s) <= n || s[:n] != p || s[n] != '_' {
		return Key{}, ErrPrefix
	}
	rest := s[n+1:]
	if len(rest) <= envLen || rest[envLen] != '_' {
		return Key{}, ErrPrefix
	}
	switch env := rest[:envLen]; {
	case env == e:
	case env == EnvLive || env == EnvTest:
		return Key{}, ErrEnv
	default:
		return Key{}, ErrPrefix
	}
	if len(s) != f.Len() {
		return Key{}, ErrLength
	}
	bodyStart := n + 1 + envLen + 1
	if !isBase62(s[bodyStart:]) {
		return Key{}, ErrAlphabet
	}
	if !validChecksum(s) {
		return Key{}, ErrChecksum
	}
	return newKey(s, n, envLen), nil
}

// LooksLikeKey reports whether s has the shape of a Gatehouse key of any
// valid prefix and either environment, with a valid checksum. Use it to
// spot keys where they do not belong, such as a URL query parameter; use
// [Format.Parse] to accept one.
func LooksLikeKey(s string) bool {
	if len(s) > maxKeyLen || len(s) < minPrefixLen+1+envLen+1+bodyLen {
		return false
	}
	n := len(s) - (1 + envLen + 1 + bodyLen) // prefix length
	if !validPrefix(s[:n]) || s[n] != '_' || s[n+1+envLen] != '_' {
		return false
	}
	if env := s[n+1 : n+1+envLen]; env != EnvLive && env != EnvTest {
		return false
	}
	return isBase62(s[n+1+envLen+1:]) && validChecksum(s)
}

// ValidID reports whether id has the shape of a key ID: IDLen base62
// characters. Use it to reject a malformed ID (say, in a URL path) before a
// store lookup.
func ValidID(id string) bool {
	return len(id) == IDLen && isBase62(id)
}

// validPrefix reports whether p is 2 to 8 lowercase ASCII letters or
// digits.
func validPrefix[T string | []byte](p T) bool {
	if len(p) < minPrefixLen || len(p) > maxPrefixLen {
		return false
	}
	for i := range len(p) {
		if !isPrefixChar(p[i]) {
			return false
		}
	}
	return true
}

func isPrefixChar(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
}
