package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// OpaqueTokenPrefix starts every opaque access token: "gho_" and 43
// base64url characters (256 bits from crypto/rand). It has no dots, so it
// is never taken for a JWT, and it differs from API keys ("gk_live_…") and
// refresh tokens (no prefix).
const OpaqueTokenPrefix = "gho_"

// domainOpaqueToken separates opaque-access-token hashes from other hashes
// made with the same pepper.
const domainOpaqueToken = "opaque_access_token"

// isOpaqueAccessToken reports whether tok has the shape of an opaque access
// token, so that other kinds of token cost no store lookup.
func isOpaqueAccessToken(tok string) bool {
	return strings.HasPrefix(tok, OpaqueTokenPrefix) && len(tok) <= maxOpaqueLen && !strings.Contains(tok, ".")
}

// issueOpaque issues cl (iss, jti and iat filled in here) as an opaque
// access token issued in refresh family familyID ("" for none): it stores
// the token's keyed hash with the claims and returns the token.
func (p *Provider) issueOpaque(ctx context.Context, cl token.Claims, familyID string) (string, token.Claims, error) {
	cl.Issuer = p.cfg.Issuer
	cl.ID = secret.RandomString(16)
	if cl.IssuedAt == 0 {
		cl.IssuedAt = p.now().Unix()
	}
	claims, err := json.Marshal(cl)
	if err != nil {
		return "", token.Claims{}, fmt.Errorf("opaque token claims: %w", err)
	}
	raw := OpaqueTokenPrefix + secret.RandomString(32)
	err = p.store.CreateOpaqueToken(ctx, store.OpaqueToken{
		Hash:      p.hasher.Hash(domainOpaqueToken, raw),
		ID:        cl.ID,
		ClientID:  cl.ClientID,
		FamilyID:  familyID,
		Claims:    claims,
		ExpiresAt: time.Unix(cl.ExpiresAt, 0),
	})
	if err != nil {
		return "", token.Claims{}, fmt.Errorf("store opaque token: %w", err)
	}
	return raw, cl, nil
}

// resolveOpaque looks tok up as an opaque access token. It returns the
// token's claims when the token is known, unexpired and unrevoked; ok=false
// otherwise, with found telling whether the token is stored at all. The
// error is a store failure (the answer cannot be known). It costs one
// lookup by primary key.
func (p *Provider) resolveOpaque(ctx context.Context, tok string) (cl *token.Claims, ok, found bool, err error) {
	t, err := p.store.OpaqueToken(ctx, p.hasher.Hash(domainOpaqueToken, tok))
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, false, nil
	}
	if err != nil {
		return nil, false, false, err
	}
	if !t.RevokedAt.IsZero() || !t.ExpiresAt.After(p.now()) || p.revoked.contains(t.ID) {
		return nil, false, true, nil
	}
	cl = new(token.Claims)
	if err := json.Unmarshal(t.Claims, cl); err != nil {
		return nil, false, true, fmt.Errorf("opaque token %s: corrupt claims: %w", t.ID, err)
	}
	return cl, true, true, nil
}

// resolveAccessToken resolves tok as one of Gatehouse's access tokens, a
// JWT or an opaque token, and returns its claims (read-only) and the kind
// of token it is. ok is false for anything that is not a valid, unexpired
// (JWTs: within the verifier's leeway), unrevoked access token; err is a
// store failure.
func (p *Provider) resolveAccessToken(ctx context.Context, tok string) (cl *token.Claims, kind token.Kind, ok bool, err error) {
	if isOpaqueAccessToken(tok) {
		cl, ok, _, err = p.resolveOpaque(ctx, tok)
		return cl, token.KindOpaque, ok, err
	}
	cl, ok = p.verifyAccessToken(ctx, tok)
	if !ok || p.revoked.contains(cl.ID) {
		return nil, token.KindJWT, false, nil
	}
	return cl, token.KindJWT, true, nil
}

// introspectOpaque answers for opaque access tokens with the same members
// as for a JWT access token, to clients that may know the token (mayKnow).
// An unknown token is left to the other kinds (a refresh token may, rarely,
// start with the prefix too).
func (p *Provider) introspectOpaque(ctx context.Context, c *store.Client, tok, _ string) (introspection, bool, error) {
	if !isOpaqueAccessToken(tok) {
		return introspection{}, false, nil
	}
	cl, ok, found, err := p.resolveOpaque(ctx, tok)
	if err != nil || !ok || !mayKnow(c, cl) {
		return introspection{}, found || err != nil, err
	}
	return claimsIntrospection(cl), true, nil
}

// claimsIntrospection is the active introspection answer for an access
// token with claims cl.
func claimsIntrospection(cl *token.Claims) introspection {
	return introspection{
		Active:    true,
		Scope:     cl.Scope,
		ClientID:  cl.ClientID,
		TokenType: "Bearer",
		ExpiresAt: cl.ExpiresAt,
		IssuedAt:  cl.IssuedAt,
		NotBefore: cl.NotBefore,
		Subject:   cl.Subject,
		Audience:  slices.Clone(cl.Audience),
		Issuer:    cl.Issuer,
		ID:        cl.ID,
		AuthTime:  cl.AuthTime,
		Actor:     cl.Actor,
	}
}

// revokeOpaque revokes an opaque access token issued to c (RFC 7009): the
// store marks it revoked, puts its jti on the denylist and records a
// store.ChangeTokenRevoked change with the jti, so the revocation feed
// tells guards and gateways to evict it. A token of another client is
// left alone; an unknown one is left to the other kinds.
func (p *Provider) revokeOpaque(ctx context.Context, c *store.Client, tok, _ string) (bool, error) {
	if !isOpaqueAccessToken(tok) {
		return false, nil
	}
	hash := p.hasher.Hash(domainOpaqueToken, tok)
	t, err := p.store.OpaqueToken(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("revoke opaque token: %w", err)
	}
	if t.ClientID != c.ID {
		p.log.Warn("revoke: token of another client", "client_id", c.ID)
		return true, nil
	}
	t, err = p.store.RevokeOpaqueToken(ctx, hash)
	switch {
	case errors.Is(err, store.ErrNotFound): // pruned meanwhile: it has expired
	case err != nil:
		return true, fmt.Errorf("revoke opaque token: %w", err)
	default:
		p.revoked.add(t.ID, t.ExpiresAt.Unix(), p.now())
	}
	return true, nil
}
