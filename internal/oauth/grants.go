package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// maxOpaqueLen bounds codes and refresh tokens presented to the token
// endpoint; Gatehouse's are 43 characters.
const maxOpaqueLen = 512

// validVerifier reports whether s is a PKCE code_verifier: 43 to 128
// unreserved characters (RFC 7636 section 4.1).
func validVerifier(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '.' || b == '_' || b == '~') {
			return false
		}
	}
	return true
}

// s256 is the S256 code challenge of verifier (RFC 7636 section 4.2).
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func invalidGrant(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, errInvalidGrant, desc}
}

// grantAuthorizationCode is the authorization code grant (RFC 6749
// section 4.1.3, RFC 7636 section 4.6). A code works once, for the client
// it was issued to, with the same redirect_uri and the PKCE verifier of
// its challenge. A code presented a second time fails and revokes
// everything its first use issued (section 4.1.2).
func (p *Provider) grantAuthorizationCode(w http.ResponseWriter, r *http.Request, c *store.Client, form url.Values) {
	ctx := r.Context()
	code, verifier, redirect := form.Get("code"), form.Get("code_verifier"), form.Get("redirect_uri")
	switch {
	case code == "":
		writeError(w, badRequest("code is missing"))
		return
	case verifier == "":
		writeError(w, badRequest("code_verifier is missing (PKCE is required)"))
		return
	case !validVerifier(verifier):
		writeError(w, badRequest("code_verifier is malformed"))
		return
	case redirect == "":
		writeError(w, badRequest("redirect_uri is missing"))
		return
	case len(code) > maxOpaqueLen:
		writeError(w, invalidGrant("the code is invalid"))
		return
	}
	hash := p.hasher.Hash(domainAuthCode, code)
	// The code and its user in one query: the grant needs both.
	ac, u, err := p.store.AuthCodeUser(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, invalidGrant("the code is invalid or expired"))
		return
	}
	if err != nil {
		p.tokenFault(w, c, "read code", err)
		return
	}
	if !ac.UsedAt.IsZero() {
		// A replay: revoke what the first use issued (RFC 6749 section
		// 4.1.2). A racing second use that passes this check is caught by
		// RedeemAuthCode, which revokes too.
		if err := p.store.RevokeFamily(ctx, ac.FamilyID); err != nil && !errors.Is(err, store.ErrNotFound) {
			p.tokenFault(w, c, "revoke replayed code", err)
			return
		}
		p.log.Warn("token: authorization code replayed; revoked what it issued", "client_id", c.ID)
		writeError(w, invalidGrant("the code has already been used"))
		return
	}
	switch {
	case !ac.ExpiresAt.After(p.now()):
		writeError(w, invalidGrant("the code is invalid or expired"))
		return
	case ac.ClientID != c.ID:
		writeError(w, invalidGrant("the code was issued to another client"))
		return
	case ac.RedirectURI != redirect:
		writeError(w, invalidGrant("redirect_uri does not match the authorization request"))
		return
	case subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(ac.CodeChallenge)) != 1:
		writeError(w, invalidGrant("code_verifier does not match the code challenge"))
		return
	}
	familyID := secret.RandomString(16)
	p.issueGrant(ctx, w, c, familyID, u, ac.Scopes, ac.AuthTime, ac.Nonce, func(rt *store.RefreshToken, at store.IssuedToken) error {
		_, err := p.store.RedeemAuthCode(ctx, hash, familyID, p.now(), rt, at)
		return err
	})
}

// recordFunc stores, in one transaction with the rest of the grant (the
// code's redemption, the old refresh token's rotation), the tokens a grant
// issues: the access token at and, unless nil, the refresh token rt.
type recordFunc func(rt *store.RefreshToken, at store.IssuedToken) error

// issueGrant issues the tokens of a user grant in refresh family familyID
// to user u: the access token, a refresh token for clients allowed the
// refresh_token grant, and an ID token with the openid scope. They are
// recorded with record, whose failure (a replay, a revoked family)
// discards them unseen. (An opaque access token is stored before record
// runs; discarded, it is never seen and expires unused.)
//
// The tokens are signed while record commits: the signatures (about 1 ms
// of CPU for an RS256 ID token, 30 µs for an ES256 access token) and the
// durable commit (mostly waiting for the disk) then overlap instead of
// adding up. Nothing signed depends on the commit: the access token's
// "jti", which the commit records, is chosen first. The keys and issuer
// are looked up first, so a missing key fails the grant before anything
// is recorded, and a failed commit discards what was signed.
func (p *Provider) issueGrant(ctx context.Context, w http.ResponseWriter, c *store.Client, familyID string, u store.User, scopes []string, authTime time.Time, nonce string, record recordFunc) {
	if u.Disabled {
		writeError(w, invalidGrant("the user no longer exists or is disabled"))
		return
	}
	var resp tokenResponse
	var signAccess func() (tokenResponse, error) // nil: resp is issued already
	if c.OpaqueAccessTokens() {
		var err error
		if resp, err = p.issueAccessToken(ctx, c, u.ID, scopes, authTime, familyID); err != nil {
			p.tokenFault(w, c, "issue access token", err)
			return
		}
	} else {
		cl, ttl, iss, err := p.accessClaims(c, u.ID, scopes, authTime)
		if err != nil {
			p.tokenFault(w, c, "issue access token", err)
			return
		}
		cl.ID = secret.RandomString(16) // 128 bits, as token.Issuer chooses
		resp.claims = cl
		signAccess = func() (tokenResponse, error) {
			raw, final, err := iss.Issue(cl)
			return accessResponse(raw, final, ttl), err
		}
	}
	at := store.IssuedToken{ID: resp.claims.ID, ExpiresAt: time.Unix(resp.claims.ExpiresAt, 0)}
	var rt *store.RefreshToken
	var refresh string
	if slices.Contains(c.GrantTypes, "refresh_token") {
		ttl := c.RefreshTokenTTL
		if ttl <= 0 {
			ttl = p.cfg.RefreshTokenTTL
		}
		refresh = secret.RandomString(32)
		rt = &store.RefreshToken{Hash: p.hasher.Hash(domainRefreshToken, refresh), Scopes: scopes, ExpiresAt: p.now().Add(ttl)}
	}
	openid := slices.Contains(scopes, "openid")
	var idKey token.SigningKey
	if openid {
		var err error
		if idKey, err = p.idTokenKey(c); err != nil {
			p.tokenFault(w, c, "issue ID token", err)
			return
		}
	}
	type signed struct {
		resp tokenResponse
		what string // what failed, if err is set
		err  error
	}
	done := make(chan signed, 1)
	go func() {
		s := signed{resp: resp}
		if signAccess != nil {
			if s.resp, s.err = signAccess(); s.err != nil {
				s.what = "issue access token"
				done <- s
				return
			}
		}
		if openid {
			// The ID token's at_hash is of the access token.
			if s.resp.IDToken, s.err = p.issueIDToken(idKey, c, u, scopes, authTime, nonce, s.resp); s.err != nil {
				s.what = "issue ID token"
			}
		}
		done <- s
	}()
	err := record(rt, at)
	s := <-done
	if err == nil && s.err != nil {
		// Recorded but not deliverable: the client never sees these
		// tokens and must start again.
		p.tokenFault(w, c, s.what, s.err)
		return
	}
	resp = s.resp
	resp.RefreshToken = refresh
	switch {
	case errors.Is(err, store.ErrReplay):
		p.log.Warn("token: one-time credential replayed; revoked its family", "client_id", c.ID)
		writeError(w, invalidGrant("the grant has already been used"))
	case errors.Is(err, store.ErrRevoked), errors.Is(err, store.ErrNotFound):
		writeError(w, invalidGrant("the grant is invalid, expired or revoked"))
	case err != nil:
		p.tokenFault(w, c, "record tokens", err)
	default:
		writeJSON(w, http.StatusOK, resp)
	}
}

// tokenFault logs a server-side failure and answers server_error.
func (p *Provider) tokenFault(w http.ResponseWriter, c *store.Client, what string, err error) {
	p.log.Error("token: "+what, "client_id", c.ID, "err", err)
	writeError(w, faultError(err))
}

// grantRefreshToken is the refresh token grant (RFC 6749 section 6, RFC
// 9700 section 4.14.2). Every use rotates the token; a rotated token used
// again revokes its whole family, except for an identical retry within the
// grace window. The scope may only narrow.
func (p *Provider) grantRefreshToken(w http.ResponseWriter, r *http.Request, c *store.Client, form url.Values) {
	ctx := r.Context()
	raw := form.Get("refresh_token")
	if raw == "" {
		writeError(w, badRequest("refresh_token is missing"))
		return
	}
	if len(raw) > maxOpaqueLen {
		writeError(w, invalidGrant("the refresh token is invalid"))
		return
	}
	hash := p.hasher.Hash(domainRefreshToken, raw)
	tok, fam, err := p.store.RefreshToken(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, invalidGrant("the refresh token is invalid or expired"))
		return
	}
	if err != nil {
		p.tokenFault(w, c, "read refresh token", err)
		return
	}
	switch {
	case fam.ClientID != c.ID:
		writeError(w, invalidGrant("the refresh token was issued to another client"))
		return
	case !fam.RevokedAt.IsZero() || !tok.ExpiresAt.After(p.now()):
		writeError(w, invalidGrant("the refresh token is invalid or expired"))
		return
	}
	scopes := tok.Scopes
	if form.Has("scope") {
		var oe *oauthError
		if scopes, oe = grantedScopes(form.Get("scope"), tok.Scopes); oe != nil {
			writeError(w, &oauthError{http.StatusBadRequest, errInvalidScope, "the scope may only narrow the original grant"})
			return
		}
	}
	if !slices.Contains(c.GrantTypes, "refresh_token") {
		writeError(w, &oauthError{http.StatusBadRequest, errUnauthorizedClient, "the client may not use refresh tokens"})
		return
	}
	u, err := p.store.User(ctx, fam.UserID)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, invalidGrant("the user no longer exists or is disabled"))
		return
	}
	if err != nil {
		p.tokenFault(w, c, "read user", err)
		return
	}
	p.issueGrant(ctx, w, c, fam.ID, u, scopes, fam.AuthTime, "", func(rt *store.RefreshToken, at store.IssuedToken) error {
		_, err := p.store.RotateRefreshToken(ctx, hash, *rt, at, p.now(), p.cfg.RefreshGrace)
		if errors.Is(err, store.ErrReplay) {
			p.auditNow(ctx, store.AuditEvent{Actor: "client:" + c.ID, Event: EventRefreshReuse, Target: fam.ID,
				Outcome: "family_revoked", Reason: "refresh_token_reused", SourceIP: clientIP(r),
				Details: auditDetails(map[string]any{"client_id": c.ID, "user_id": fam.UserID})})
		}
		return err
	})
}

// looksOpaque reports whether tok could be one of Gatehouse's opaque
// tokens (not a JWT, short).
func looksOpaque(tok string) bool {
	return len(tok) <= maxOpaqueLen && !strings.Contains(tok, ".")
}

// revokeRefreshToken revokes a refresh token issued to c (RFC 7009): its
// whole family goes, with the access tokens issued in it. A refresh token
// of another client is left alone (the answer is 200 either way).
func (p *Provider) revokeRefreshToken(ctx context.Context, c *store.Client, tok, _ string) (bool, error) {
	if !looksOpaque(tok) {
		return false, nil
	}
	_, fam, err := p.store.RefreshToken(ctx, p.hasher.Hash(domainRefreshToken, tok))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	if fam.ClientID != c.ID {
		p.log.Warn("revoke: refresh token of another client", "client_id", c.ID)
		return true, nil
	}
	if err := p.store.RevokeFamily(ctx, fam.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return true, err
	}
	return true, nil
}

// introspectRefreshToken answers for Gatehouse's opaque refresh tokens
// (RFC 7662), to the client they were issued to only. A rotated, expired
// or revoked token is inactive.
func (p *Provider) introspectRefreshToken(ctx context.Context, c *store.Client, tok, _ string) (introspection, bool, error) {
	if !looksOpaque(tok) {
		return introspection{}, false, nil
	}
	rt, fam, err := p.store.RefreshToken(ctx, p.hasher.Hash(domainRefreshToken, tok))
	if errors.Is(err, store.ErrNotFound) {
		return introspection{}, false, nil
	}
	if err != nil {
		return introspection{}, true, err
	}
	if fam.ClientID != c.ID || !fam.RevokedAt.IsZero() || !rt.RotatedAt.IsZero() || !rt.ExpiresAt.After(p.now()) {
		return introspection{}, true, nil
	}
	return introspection{
		Active:    true,
		Scope:     strings.Join(rt.Scopes, " "),
		ClientID:  fam.ClientID,
		TokenType: "refresh_token",
		ExpiresAt: rt.ExpiresAt.Unix(),
		IssuedAt:  rt.CreatedAt.Unix(),
		Subject:   fam.UserID,
		Issuer:    p.cfg.Issuer,
		AuthTime:  fam.AuthTime.Unix(),
	}, true, nil
}
