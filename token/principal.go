package token

import (
	"slices"
	"time"
)

// Kind is the kind of credential a caller presented.
type Kind string

// Credential kinds.
const (
	// KindJWT is a JWT access token verified locally.
	KindJWT Kind = "jwt"
	// KindOpaque is an opaque access token answered by introspection.
	KindOpaque Kind = "opaque"
	// KindAPIKey is an API key.
	KindAPIKey Kind = "apikey"
)

// valid reports whether k is one of the known kinds.
func (k Kind) valid() bool {
	return k == KindJWT || k == KindOpaque || k == KindAPIKey
}

// Principal describes who is calling. Introspection, the guard middleware and
// the gateway all describe a verified credential with it, whatever its kind.
type Principal struct {
	// Subject is the user or service the credential was issued to.
	Subject string
	// ClientID is the OAuth client the credential was issued through.
	ClientID string
	// Scopes are the granted scopes.
	Scopes []string
	// Audience lists the resource servers the credential is meant for.
	Audience []string
	// Kind is the kind of credential presented.
	Kind Kind
	// KeyID is the API key id when Kind is KindAPIKey.
	KeyID string
	// TokenID is the "jti" of the presented token, if any.
	TokenID string
	// ExpiresAt is when the credential stops being valid; zero if it does not
	// expire.
	ExpiresAt time.Time
	// Actor is the RFC 8693 delegation chain, nil if none.
	Actor *Actor
}

// HasScope reports whether s is one of p's scopes. The comparison is exact
// and case-sensitive (RFC 6749, section 3.3).
func (p Principal) HasScope(s string) bool {
	return slices.Contains(p.Scopes, s)
}

// Actor is one link of an RFC 8693 "act" (actor) claim: the party acting on
// behalf of the subject, and who that party itself acts for, if anyone
// (RFC 8693, section 4.1).
type Actor struct {
	// Subject is the acting party ("sub").
	Subject string `json:"sub"`
	// ClientID is the client of the acting party ("client_id"), if known.
	ClientID string `json:"client_id,omitempty"`
	// Actor is the previous actor in the chain ("act"), nil if none.
	Actor *Actor `json:"act,omitempty"`
}
