package guard

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gatehouse-dev/gatehouse/token"
)

// Policy says what a route accepts. The zero Policy accepts any valid
// credential of a kind the Guard is configured for, with any scopes.
type Policy struct {
	// Kinds are the accepted credential kinds: token.KindJWT,
	// token.KindAPIKey, token.KindOpaque, or several. Empty means every
	// kind the Guard is configured for.
	Kinds []token.Kind
	// AllOf are scopes the credential must all have.
	AllOf []string
	// AnyOf are scopes of which the credential must have at least one,
	// when not empty.
	AnyOf []string
	// Audience, if set, must also be in a JWT's or opaque token's "aud"
	// (besides Config.Audience, which every token must have). API keys carry no
	// audience and are not checked against it: restrict them with Kinds
	// or scopes.
	Audience string
}

// rule is a checked Policy.
type rule struct {
	jwt, apiKey  bool
	opaque       bool
	allOf, anyOf []string
	audience     string
	// scope is the "scope" attribute of an insufficient_scope challenge.
	scope string
}

// compile checks p against g's configuration.
func (g *Guard) compile(p Policy) (rule, error) {
	r := rule{allOf: slices.Clone(p.AllOf), anyOf: slices.Clone(p.AnyOf), audience: p.Audience}
	kinds := p.Kinds
	if len(kinds) == 0 {
		r.jwt, r.apiKey, r.opaque = g.verifier != nil, g.apiKeys != nil, g.intro != nil
	}
	for _, k := range kinds {
		switch k {
		case token.KindJWT:
			if g.verifier == nil {
				return rule{}, fmt.Errorf("guard: policy accepts JWTs but Config.Issuer is not set")
			}
			r.jwt = true
		case token.KindAPIKey:
			if g.apiKeys == nil {
				return rule{}, fmt.Errorf("guard: policy accepts API keys but Config.APIKeys is not set")
			}
			r.apiKey = true
		case token.KindOpaque:
			if g.intro == nil {
				return rule{}, fmt.Errorf("guard: policy accepts opaque tokens but Config.Introspector is not set")
			}
			r.opaque = true
		default:
			return rule{}, fmt.Errorf("guard: policy kind %q is not supported (want %q, %q or %q)", k, token.KindJWT, token.KindAPIKey, token.KindOpaque)
		}
	}
	for _, s := range slices.Concat(r.allOf, r.anyOf) {
		if !isScopeToken(s) {
			return rule{}, fmt.Errorf("guard: policy scope %q is not a valid scope token (RFC 6749, section 3.3)", s)
		}
	}
	r.scope = strings.Join(slices.Concat(r.allOf, r.anyOf), " ")
	return r, nil
}

// accepts reports whether the rule accepts credentials of kind k.
func (r *rule) accepts(k token.Kind) bool {
	switch k {
	case token.KindJWT:
		return r.jwt
	case token.KindAPIKey:
		return r.apiKey
	case token.KindOpaque:
		return r.opaque
	}
	return false
}

// hasScopes reports whether p has the scopes the rule requires.
func (r *rule) hasScopes(p *token.Principal) bool {
	for _, s := range r.allOf {
		if !slices.Contains(p.Scopes, s) {
			return false
		}
	}
	if len(r.anyOf) == 0 {
		return true
	}
	for _, s := range r.anyOf {
		if slices.Contains(p.Scopes, s) {
			return true
		}
	}
	return false
}

// isScopeToken reports whether s is a scope-token: 1*( %x21 / %x23-5B /
// %x5D-7E ) (RFC 6749, section 3.3).
func isScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
