package oauth

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// idTokenClaims are the claims of an OpenID Connect ID token (OpenID
// Connect Core section 2) with the standard claims of the profile and
// email scopes (section 5.4). "client_id" and "jti" are added so that the
// token package's verifier, which requires them, can check an
// id_token_hint.
type idTokenClaims struct {
	Issuer    string         `json:"iss"`
	Subject   string         `json:"sub"`
	Audience  token.Audience `json:"aud"`
	ExpiresAt int64          `json:"exp"`
	IssuedAt  int64          `json:"iat"`
	AuthTime  int64          `json:"auth_time,omitempty"`
	Nonce     string         `json:"nonce,omitempty"`
	ATHash    string         `json:"at_hash,omitempty"`
	AZP       string         `json:"azp"`
	ClientID  string         `json:"client_id"`
	ID        string         `json:"jti"`
	userClaims
}

// userClaims are the user's standard claims, by scope.
type userClaims struct {
	Name              string `json:"name,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
	Email             string `json:"email,omitempty"`
	EmailVerified     *bool  `json:"email_verified,omitempty"`
}

// claimsFor returns u's claims that scopes allow.
func claimsFor(u store.User, scopes []string) userClaims {
	var c userClaims
	if slices.Contains(scopes, "profile") {
		c.Name, c.PreferredUsername = u.Name, u.Username
	}
	if slices.Contains(scopes, "email") && u.Email != "" {
		v := u.EmailVerified
		c.Email, c.EmailVerified = u.Email, &v
	}
	return c
}

// idTokenAlg is the algorithm of c's ID tokens: RS256 unless the client
// registered another.
func idTokenAlg(c *store.Client) token.Algorithm {
	if c.IDTokenAlg == "" {
		return token.RS256
	}
	return token.Algorithm(c.IDTokenAlg)
}

// atHash is the at_hash of an access token signed with alg: the left half
// of the hash of its ASCII form, base64url (OpenID Connect Core section
// 3.1.3.6). The hash is SHA-256 for ES256 and RS256 and SHA-512 for
// Ed25519.
func atHash(alg token.Algorithm, accessToken string) string {
	var h hash.Hash
	if alg == token.EdDSA {
		h = sha512.New()
	} else {
		h = sha256.New()
	}
	h.Write([]byte(accessToken))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// idTokenKey returns the key that signs c's ID tokens now.
func (p *Provider) idTokenKey(c *store.Client) (token.SigningKey, error) {
	key, err := p.cfg.Keys.Active(idTokenAlg(c))
	if err != nil {
		return token.SigningKey{}, fmt.Errorf("id token: %w", err)
	}
	return key, nil
}

// issueIDToken signs with key (see idTokenKey) an ID token for user u,
// issued to client c with the access token of resp.
func (p *Provider) issueIDToken(key token.SigningKey, c *store.Client, u store.User, scopes []string, authTime time.Time, nonce string, resp tokenResponse) (string, error) {
	alg := key.Algorithm
	now := p.now()
	ttl := c.AccessTokenTTL
	if ttl <= 0 {
		ttl = p.cfg.AccessTokenTTL
	}
	cl := idTokenClaims{
		Issuer:     p.cfg.Issuer,
		Subject:    u.ID,
		Audience:   token.Audience{c.ID},
		ExpiresAt:  now.Add(ttl).Unix(),
		IssuedAt:   now.Unix(),
		Nonce:      nonce,
		ATHash:     atHash(alg, resp.AccessToken),
		AZP:        c.ID,
		ClientID:   c.ID,
		ID:         secret.RandomString(16),
		userClaims: claimsFor(u, scopes),
	}
	if !authTime.IsZero() {
		cl.AuthTime = authTime.Unix()
	}
	return token.Sign(key, "JWT", cl)
}

// verifyIDTokenHint verifies an ID token this server issued (signature,
// issuer, expiry) and returns its audience, the client it was issued to.
// An expired hint is refused.
func (p *Provider) verifyIDTokenHint(r *http.Request, hint string) (string, bool) {
	aud, ok := unsafePeekAudience(hint)
	if !ok {
		return "", false
	}
	v, err := token.NewVerifier(token.VerifierConfig{Issuer: p.cfg.Issuer, Audience: aud, Keys: p.keys, Type: "JWT", Now: p.now})
	if err != nil {
		return "", false
	}
	if _, err := v.Verify(r.Context(), hint); err != nil {
		return "", false
	}
	return aud, true
}

// serveUserinfo is the UserInfo endpoint (OpenID Connect Core section
// 5.3): the user's claims for an access token with the openid scope, sent
// as a bearer token in the Authorization header (RFC 6750 section 2.1).
func (p *Provider) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	authz := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(authz, " ")
	if authz == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		writeBearerError(w, http.StatusUnauthorized, "", "")
		return
	}
	cl, _, ok, err := p.resolveAccessToken(r.Context(), strings.TrimSpace(raw))
	if err != nil {
		p.log.Error("userinfo: access token", "err", err)
		writeError(w, faultError(err))
		return
	}
	if !ok {
		writeBearerError(w, http.StatusUnauthorized, errInvalidToken, "the access token is invalid, expired or revoked")
		return
	}
	scopes := cl.Scopes()
	if !slices.Contains(scopes, "openid") {
		writeBearerError(w, http.StatusForbidden, "insufficient_scope", "the access token lacks the openid scope")
		return
	}
	u, err := p.store.User(r.Context(), cl.Subject)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.Disabled) {
		writeBearerError(w, http.StatusUnauthorized, errInvalidToken, "the user no longer exists or is disabled")
		return
	}
	if err != nil {
		p.log.Error("userinfo: user", "err", err)
		writeError(w, serverError())
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Subject string `json:"sub"`
		userClaims
	}{u.ID, claimsFor(u, scopes)})
}
