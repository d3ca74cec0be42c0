package apikey

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
)

// Key is a parsed or generated API key. Its exported fields are public
// information; the plaintext is kept unexported and every way of printing
// a Key (fmt verbs, log/slog, encoding/json) shows only the masked form, so a
// Key passed around by mistake does not leak.
type Key struct {
	// Prefix is the key's type prefix, such as "gk".
	Prefix string
	// Env is EnvLive or EnvTest.
	Env string
	// ID is the public identifier the store looks the key up by.
	ID string

	plaintext string
}

// newKey returns the Key for the well-formed key s whose prefix and
// environment have the given lengths. The fields are substrings of s: no
// allocation.
func newKey(s string, prefixLen, envLen int) Key {
	idStart := prefixLen + 1 + envLen + 1
	return Key{
		Prefix:    s[:prefixLen],
		Env:       s[prefixLen+1 : prefixLen+1+envLen],
		ID:        s[idStart : idStart+IDLen],
		plaintext: s,
	}
}

// Plaintext returns the whole key. It is the one way to read the secret:
// show it to the owner once, at creation, and pass it to [Hasher.Hash];
// never log or store it.
func (k Key) Plaintext() string { return k.plaintext }

// Masked returns a form of the key that is safe to show and log: the
// prefix, environment and ID, an ellipsis, and the last four characters
// (which belong to the checksum), for example
// "gk_live_0123456789AB…1B2c". It returns "" for the zero Key.
func (k Key) Masked() string {
	if len(k.plaintext) < 4 {
		return ""
	}
	return mask(k.Prefix, k.Env, k.ID, k.plaintext[len(k.plaintext)-4:])
}

func mask(prefix, env, id, last4 string) string {
	return prefix + "_" + env + "_" + id + "…" + last4
}

// String returns the masked form of the key.
func (k Key) String() string { return k.Masked() }

// GoString returns a Go-syntax-like form without the secret, for %#v.
func (k Key) GoString() string {
	return "apikey.Key{" + strconv.Quote(k.Masked()) + "}"
}

// Format implements fmt.Formatter so that no verb (%v, %+v, %#v, %s, %q,
// %x, %d, …) prints the secret: %#v prints GoString, %q the quoted masked
// form, everything else the masked form.
func (k Key) Format(s fmt.State, verb rune) {
	switch {
	case verb == 'v' && s.Flag('#'):
		io.WriteString(s, k.GoString())
	case verb == 'q':
		io.WriteString(s, strconv.Quote(k.Masked()))
	default:
		io.WriteString(s, k.Masked())
	}
}

// LogValue implements slog.LogValuer: a Key logs as its masked form.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.Masked()) }

// MarshalText implements encoding.TextMarshaler with the masked form, so
// that encoding/json and similar encoders never see the secret.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.Masked()), nil }

var (
	_ fmt.Formatter  = Key{}
	_ fmt.Stringer   = Key{}
	_ slog.LogValuer = Key{}
)
