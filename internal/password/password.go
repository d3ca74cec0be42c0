// Package password hashes and checks user passwords with argon2id
// (RFC 9106) in the PHC string format.
//
// Passwords are chosen by people and have little entropy, so unlike the
// random secrets Gatehouse generates (which get a fast keyed hash, see
// internal/secret) they get a deliberately slow, memory-hard hash: the
// OWASP minimum for argon2id, 19 MiB of memory, 2 passes, 1 lane.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Parameters of new hashes (OWASP Password Storage Cheat Sheet, argon2id).
const (
	Memory  = 19 * 1024 // KiB
	Time    = 2
	Threads = 1
	saltLen = 16
	keyLen  = 32
)

// Bounds on the parameters of a stored hash, so a corrupt or hostile row
// cannot make a check allocate gigabytes or run for minutes.
const (
	maxMemory  = 1 << 20 // 1 GiB, in KiB
	maxTime    = 16
	maxThreads = 16
)

// MaxLength is the longest password accepted, in bytes. Longer inputs are
// refused before hashing.
const MaxLength = 1024

// MinLength is the shortest password a person may choose, in bytes: the
// policy of the CLI and of the account page. Check does not enforce it.
const MinLength = 8

var (
	// ErrMismatch means the password does not match the hash.
	ErrMismatch = errors.New("password: mismatch")
	// ErrFormat means the stored hash is not an argon2id PHC string this
	// package can check.
	ErrFormat = errors.New("password: unsupported hash format")
	// ErrTooLong means the password is longer than MaxLength.
	ErrTooLong = errors.New("password: too long")
	// ErrEmpty means the password is empty.
	ErrEmpty = errors.New("password: empty")
)

var b64 = base64.RawStdEncoding

// Hash returns the argon2id PHC string of password with a fresh random
// salt: $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>.
func Hash(password string) (string, error) {
	if password == "" {
		return "", ErrEmpty
	}
	if len(password) > MaxLength {
		return "", ErrTooLong
	}
	salt := make([]byte, saltLen)
	rand.Read(salt) // never fails
	key := argon2.IDKey([]byte(password), salt, Time, Memory, Threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, Memory, Time, Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// params is a parsed PHC string.
type params struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// parse reads an argon2id PHC string strictly.
func parse(phc string) (params, error) {
	var p params
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, ErrFormat
	}
	var m, t, th uint64
	for i, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil || i > 2 || k != "mtp"[i:i+1] {
			return p, ErrFormat
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			th = n
		}
	}
	if m < 8 || m > maxMemory || t < 1 || t > maxTime || th < 1 || th > maxThreads || m < 8*th {
		return p, ErrFormat
	}
	salt, err1 := b64.DecodeString(parts[4])
	key, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(key) < 16 || len(key) > 64 {
		return p, ErrFormat
	}
	return params{memory: uint32(m), time: uint32(t), threads: uint8(th), salt: salt, key: key}, nil
}

// Check reports whether password matches the PHC string stored: nil, or an
// error wrapping ErrMismatch, ErrFormat or ErrTooLong. The comparison is in
// constant time.
func Check(stored, password string) error {
	if len(password) > MaxLength {
		return ErrTooLong
	}
	p, err := parse(stored)
	if err != nil {
		return err
	}
	key := argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	if subtle.ConstantTimeCompare(key, p.key) != 1 {
		return ErrMismatch
	}
	return nil
}

// dummy is a valid hash of a random password, checked when a username
// does not exist so that the response takes as long as for a real user.
var dummy = func() string {
	h, err := Hash(base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(int(Memory)))) + "-dummy")
	if err != nil {
		panic(err)
	}
	return h
}()

// CheckDummy spends the time of one Check against a hash nothing matches.
// Login calls it for unknown usernames, so timing does not reveal which
// usernames exist.
func CheckDummy(password string) {
	_ = Check(dummy, password+"\x00")
}
