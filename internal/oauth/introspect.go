package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// introspectionJWTType is the media type and "typ" of a JWT introspection
// response (RFC 9701 section 5).
const introspectionJWTType = "token-introspection+jwt"

// introspectionAlg signs JWT introspection responses: RS256, the default of
// RFC 9701 section 6 for clients that registered no algorithm.
const introspectionAlg = token.RS256

// maxVerifiers bounds the token verifiers kept, one per audience.
const maxVerifiers = 1024

// introspection is an RFC 7662 section 2.2 response. An inactive token is
// {"active": false} and nothing else.
type introspection struct {
	Active    bool           `json:"active"`
	Scope     string         `json:"scope,omitempty"`
	ClientID  string         `json:"client_id,omitempty"`
	Username  string         `json:"username,omitempty"`
	TokenType string         `json:"token_type,omitempty"`
	ExpiresAt int64          `json:"exp,omitempty"`
	IssuedAt  int64          `json:"iat,omitempty"`
	NotBefore int64          `json:"nbf,omitempty"`
	Subject   string         `json:"sub,omitempty"`
	Audience  token.Audience `json:"aud,omitempty"`
	Issuer    string         `json:"iss,omitempty"`
	ID        string         `json:"jti,omitempty"`
	AuthTime  int64          `json:"auth_time,omitempty"`
	Actor     *token.Actor   `json:"act,omitempty"`
}

// introspectFunc looks tok up as one kind of token on behalf of client c.
// It returns ok=false when tok is not of its kind, so the next kind is
// tried; a token of its kind that is invalid, expired, revoked or not for
// c is ok=true with an inactive answer.
type introspectFunc func(ctx context.Context, c *store.Client, tok, hint string) (resp introspection, ok bool, err error)

// introspectors lists the kinds of token the introspection endpoint knows,
// in the order they are tried.
func (p *Provider) introspectors() []introspectFunc {
	return []introspectFunc{p.introspectAccessToken, p.introspectOpaque, p.introspectRefreshToken, p.introspectAPIKey}
}

// serveIntrospect is the introspection endpoint (RFC 7662). Only
// confidential clients may call it, and a client learns about a token only
// if the token was issued to it or is meant for one of its audiences;
// otherwise the token is reported inactive. With "Accept:
// application/token-introspection+jwt" the answer is a signed JWT (RFC 9701).
func (p *Provider) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	p.flagKeysInQuery(r)
	form, oe := readForm(r)
	if oe != nil {
		writeError(w, oe)
		return
	}
	c, oe := p.authenticateClient(r.Context(), r, form, p.cfg.Issuer+IntrospectPath)
	if oe != nil {
		writeError(w, oe)
		return
	}
	if c.Public {
		writeTokenError(w, http.StatusUnauthorized, errInvalidClient, "public clients cannot introspect tokens")
		return
	}
	tok := form.Get("token")
	if tok == "" {
		writeTokenError(w, http.StatusBadRequest, errInvalidRequest, "token is missing")
		return
	}
	resp := introspection{}
	for _, in := range p.introspectors() {
		got, ok, err := in(r.Context(), c, tok, form.Get("token_type_hint"))
		if err != nil {
			p.log.Error("introspect", "client_id", c.ID, "err", err)
			writeError(w, faultError(err))
			return
		}
		if ok {
			resp = got
			break
		}
	}
	if !resp.Active {
		resp = introspection{}
	}
	if wantsIntrospectionJWT(r.Header.Get("Accept")) {
		p.writeIntrospectionJWT(w, c, resp)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// wantsIntrospectionJWT reports whether an Accept header asks for
// application/token-introspection+jwt.
func wantsIntrospectionJWT(accept string) bool {
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && mt == "application/"+introspectionJWTType {
			return true
		}
	}
	return false
}

// writeIntrospectionJWT answers with a signed introspection response (RFC
// 9701 section 5): iss, aud (the calling client), iat, and the RFC 7662
// answer in "token_introspection".
func (p *Provider) writeIntrospectionJWT(w http.ResponseWriter, c *store.Client, resp introspection) {
	key, err := p.cfg.Keys.Active(introspectionAlg)
	if err != nil {
		p.log.Error("introspect: signing key", "err", err)
		writeError(w, serverError())
		return
	}
	claims := struct {
		Issuer   string        `json:"iss"`
		Audience string        `json:"aud"`
		IssuedAt int64         `json:"iat"`
		Result   introspection `json:"token_introspection"`
	}{p.cfg.Issuer, c.ID, p.now().Unix(), resp}
	jwt, err := token.Sign(key, introspectionJWTType, claims)
	if err != nil {
		p.log.Error("introspect: sign", "err", err)
		writeError(w, serverError())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/"+introspectionJWTType)
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.Write([]byte(jwt))
}

// introspectAccessToken answers for Gatehouse's JWT access tokens, which
// are verified with the token package against the live signing keys and
// checked against the revocation list.
func (p *Provider) introspectAccessToken(ctx context.Context, c *store.Client, tok, _ string) (introspection, bool, error) {
	cl, ok := p.verifyAccessToken(ctx, tok)
	if !ok {
		return introspection{}, looksLikeJWT(tok), nil
	}
	if p.revoked.contains(cl.ID) || !mayKnow(c, cl) {
		return introspection{}, true, nil
	}
	return claimsIntrospection(cl), true, nil
}

// mayKnow reports whether client c may learn about a token with claims cl:
// it was issued to c, or it is meant for one of c's audiences.
func mayKnow(c *store.Client, cl *token.Claims) bool {
	if cl.ClientID == c.ID {
		return true
	}
	for _, a := range c.Audiences {
		if cl.Audience.Contains(a) {
			return true
		}
	}
	return false
}

// looksLikeJWT reports whether tok has the shape of a compact JWS.
func looksLikeJWT(tok string) bool {
	return strings.Count(tok, ".") == 2
}

// verifyAccessToken verifies tok as one of Gatehouse's access tokens and
// returns its claims (read-only: they may be shared with a cache).
//
// A token.Verifier checks one audience, so the audience to check is taken
// from the token itself before verification; the signature then proves it
// (and everything else). A verifier with a cache of verified tokens is kept
// per audience, but only once a token for that audience has verified: their
// number is bounded by the audiences Gatehouse issued tokens for, never by
// what callers send.
func (p *Provider) verifyAccessToken(ctx context.Context, tok string) (*token.Claims, bool) {
	aud, ok := unsafePeekAudience(tok)
	if !ok {
		return nil, false
	}
	p.verifiersMu.RLock()
	v := p.verifiers[aud]
	p.verifiersMu.RUnlock()
	if v != nil {
		cl, err := v.Verify(ctx, tok)
		return cl, err == nil
	}
	once, err := p.newVerifier(aud, nil)
	if err != nil {
		p.log.Error("verify access token: verifier", "err", err)
		return nil, false
	}
	cl, err := once.Verify(ctx, tok)
	if err != nil {
		return nil, false
	}
	p.keepVerifier(aud)
	return cl, true
}

// unsafePeekAudience returns the first "aud" of a JWT without verifying
// anything. Its result only chooses which verifier checks the token.
func unsafePeekAudience(tok string) (string, bool) {
	if len(tok) > token.DefaultMaxSize || !looksLikeJWT(tok) {
		return "", false
	}
	parts := strings.SplitN(tok, ".", 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var cl struct {
		Audience token.Audience `json:"aud"`
	}
	if json.Unmarshal(payload, &cl) != nil || len(cl.Audience) == 0 || cl.Audience[0] == "" {
		return "", false
	}
	return cl.Audience[0], true
}

func (p *Provider) newVerifier(aud string, cache *token.Cache) (*token.Verifier, error) {
	return token.NewVerifier(token.VerifierConfig{Issuer: p.cfg.Issuer, Audience: aud, Keys: p.keys, Now: p.now, Cache: cache})
}

// keepVerifier keeps a verifier with a cache for audience aud, up to
// maxVerifiers.
func (p *Provider) keepVerifier(aud string) {
	p.verifiersMu.Lock()
	defer p.verifiersMu.Unlock()
	if p.verifiers[aud] != nil || len(p.verifiers) >= maxVerifiers {
		return
	}
	cache := token.NewCache(10000)
	v, err := p.newVerifier(aud, cache)
	if err != nil {
		return
	}
	p.verifiers[aud] = v
	p.caches = append(p.caches, cache)
}

// evictCached drops a revoked token from every verifier cache. (The
// denylist check after verification is what rejects it; this only frees
// memory sooner.)
func (p *Provider) evictCached(jti string) {
	p.verifiersMu.Lock()
	defer p.verifiersMu.Unlock()
	for _, c := range p.caches {
		c.RevokeID(jti)
	}
}
