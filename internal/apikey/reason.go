package apikey

import "errors"

// Reason is a stable, machine-readable code saying why a key was refused.
// It goes into the owner's logs and the audit log, never into the response
// to the caller. The package documentation has the full table.
//
// A Reason is also an error, so a layer can return one directly (or wrap
// it with %w) and [ReasonOf] recovers it.
type Reason string

// Reasons returned by [Format.Parse].
const (
	ReasonWrongPrefix Reason = "wrong_prefix"
	ReasonWrongEnv    Reason = "wrong_environment"
	ReasonWrongLength Reason = "wrong_length"
	ReasonInvalidChar Reason = "invalid_character"
	ReasonBadChecksum Reason = "bad_checksum"
)

// Reasons returned by the layers that look keys up, verify and serve them.
const (
	// ReasonUnknownID means no key has the given ID. Callers must answer it
	// exactly like ReasonWrongSecret (same status, same timing).
	ReasonUnknownID Reason = "unknown_id"
	// ReasonWrongSecret means the ID exists but the secret does not match.
	ReasonWrongSecret Reason = "wrong_secret"
	// ReasonRevoked means the key was revoked.
	ReasonRevoked Reason = "revoked"
	// ReasonExpired means the key is past its expiry time.
	ReasonExpired Reason = "expired"
	// ReasonRotated means the key was rotated and its grace period is over.
	ReasonRotated Reason = "rotated"
	// ReasonIPDenied means the caller's address is outside the key's
	// allow-list.
	ReasonIPDenied Reason = "ip_denied"
	// ReasonRateLimited means the key is over its rate limit.
	ReasonRateLimited Reason = "rate_limited"
	// ReasonInQuery means the key was sent in a URL query string, where
	// proxies and browsers log it; it is refused and flagged as exposed.
	ReasonInQuery Reason = "key_in_query"
)

// Error returns "apikey: " followed by the reason code.
func (r Reason) Error() string { return "apikey: " + string(r) }

// Sentinel errors returned by [Format.Parse], each carrying its [Reason].
// They never include any part of the key.
var (
	// ErrPrefix means the string does not start with the format's prefix
	// followed by a known environment.
	ErrPrefix error = ReasonWrongPrefix
	// ErrEnv means the string is a key for the other environment.
	ErrEnv error = ReasonWrongEnv
	// ErrLength means the string has the right prefix but the wrong length.
	ErrLength error = ReasonWrongLength
	// ErrAlphabet means the body contains a character outside base62.
	ErrAlphabet error = ReasonInvalidChar
	// ErrChecksum means the checksum does not match the rest of the key.
	ErrChecksum error = ReasonBadChecksum
)

// ReasonOf returns the Reason carried by err or by any error it wraps, or
// "" if there is none.
func ReasonOf(err error) Reason {
	var r Reason
	if errors.As(err, &r) {
		return r
	}
	return ""
}
