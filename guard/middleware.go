package guard

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

// Require returns middleware that lets a request through to the wrapped
// handler only if it carries exactly one valid credential that p accepts;
// the handler reads the caller with [PrincipalFrom]. Other requests are
// answered as RFC 6750 (section 3) says:
//
//   - 400 invalid_request: a credential in the URL query string, duplicated
//     Authorization or X-API-Key headers, two credentials, a malformed
//     header;
//   - 401 without an error attribute: no credential;
//   - 401 invalid_token: a credential that is invalid, expired, revoked,
//     for another audience, or of a kind p does not accept;
//   - 403 insufficient_scope, with the scopes p requires;
//   - 429 with Retry-After: an API key over its rate limit;
//   - 503 with Retry-After: Gatehouse could not be reached and nothing
//     cached could answer.
//
// Responses say nothing more than the error code. Require panics if p is
// invalid for the Guard (an unknown kind, a kind the Guard is not
// configured for, a malformed scope): that is a programming error, caught
// when routes are set up.
func (g *Guard) Require(p Policy) func(http.Handler) http.Handler {
	r, err := g.compile(p)
	if err != nil {
		panic(err)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			pr, d := g.authenticate(req, &r)
			if d != nil {
				g.deny(w, req, d)
				return
			}
			next.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), principalKey{}, pr)))
		})
	}
}

// denial is why a request was refused.
type denial struct {
	status int
	// code is the RFC 6750 error code; empty when no credential was sent.
	code string
	// desc is a safe error_description, for invalid_request only.
	desc string
	// scope is the scope attribute of insufficient_scope.
	scope string
	// retryAfter sets the Retry-After header of 429 and 503 answers.
	retryAfter time.Duration
	// kind and keyID, reason and err are logged, never sent.
	kind   token.Kind
	keyID  string
	reason string
	err    error
}

// Errors that a denial logs.
var (
	errKindNotAccepted = errors.New("credential kind not accepted on this route")
	errOpaque          = errors.New("opaque tokens are not accepted")
	errOpaqueRefused   = errors.New("opaque token refused by Gatehouse")
	errOpaqueExpired   = errors.New("opaque token expired")
	errOpaqueAudience  = errors.New("opaque token audience does not include this resource server")
	errRevoked         = errors.New("credential revoked")
	errKeyExpired      = errors.New("API key expired")
	errKeyMalformed    = errors.New("not a well-formed API key")
	errKeyRefused      = errors.New("API key refused by Gatehouse")
	errRateLimited     = errors.New("API key over its rate limit")
	errPolicyAudience  = errors.New("token audience does not include the route's audience")
	errScope           = errors.New("insufficient scope")
)

func invalidToken(kind token.Kind, err error) *denial {
	return &denial{status: http.StatusUnauthorized, code: "invalid_token", kind: kind, err: err}
}

func unavailable(kind token.Kind, err error) *denial {
	return &denial{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", retryAfter: time.Second, kind: kind, err: err}
}

// authenticate returns the verified principal of req if r accepts it.
func (g *Guard) authenticate(req *http.Request, r *rule) (*token.Principal, *denial) {
	cred, err := extract(req, token.DefaultMaxSize)
	switch {
	case errors.Is(err, errTooLarge):
		return nil, invalidToken("", err)
	case err != nil:
		return nil, &denial{status: http.StatusBadRequest, code: "invalid_request", desc: err.Error(), err: err}
	case cred.value == "":
		return nil, &denial{status: http.StatusUnauthorized}
	case cred.kind == token.KindOpaque && g.intro == nil:
		return nil, invalidToken(cred.kind, errOpaque)
	case !r.accepts(cred.kind):
		return nil, invalidToken(cred.kind, errKindNotAccepted)
	}
	var p *token.Principal
	var d *denial
	switch cred.kind {
	case token.KindJWT:
		p, d = g.checkJWT(req.Context(), cred.value, r)
	case token.KindOpaque:
		p, d = g.checkOpaque(req.Context(), cred.value, r)
	default:
		p, d = g.checkKey(req.Context(), cred.value, g.clientIP(req))
	}
	if d != nil {
		return nil, d
	}
	if !r.hasScopes(p) {
		return nil, &denial{status: http.StatusForbidden, code: "insufficient_scope", scope: r.scope, kind: p.Kind, keyID: p.KeyID, err: errScope}
	}
	return p, nil
}

// checkJWT verifies a JWT access token: from the cache, or with the
// Verifier.
func (g *Guard) checkJWT(ctx context.Context, raw string, r *rule) (*token.Principal, *denial) {
	h := hashToken(raw)
	p, d := g.jwtPrincipal(ctx, h, raw)
	if d != nil {
		return nil, d
	}
	if r.audience != "" && !slices.Contains(p.Audience, r.audience) {
		return nil, invalidToken(token.KindJWT, errPolicyAudience)
	}
	return p, nil
}

func (g *Guard) jwtPrincipal(ctx context.Context, h keyHash, raw string) (*token.Principal, *denial) {
	if e, ok := g.tokens.get(h, g.now()); ok {
		return &e.principal, nil
	}
	claims, err := g.verifier.Verify(ctx, raw)
	if err != nil {
		if errors.Is(err, token.ErrKeySetUnavailable) {
			return nil, unavailable(token.KindJWT, err)
		}
		return nil, invalidToken(token.KindJWT, err)
	}
	now := g.now()
	gen := g.gen.Load()
	if g.revoked.has(revocation{token.KindJWT, claims.ID}, now) {
		return nil, invalidToken(token.KindJWT, errRevoked)
	}
	// Checked after the verification, so a revocation that arrived
	// meanwhile is not cached over.
	e := &keyEntry{active: true, principal: claims.Principal(), until: time.Unix(claims.ExpiresAt, 0)}
	g.tokens.putIf(h, e, now, &g.gen, gen)
	return &e.principal, nil
}

// checkKey checks an API key: from the cache, or with Gatehouse.
func (g *Guard) checkKey(ctx context.Context, key string, ip netip.Addr) (*token.Principal, *denial) {
	now := g.now()
	h := hashKey(key, ip)
	if e, ok := g.hits.get(h, now); ok {
		return &e.principal, nil
	}
	if e, ok := g.misses.get(h, now); ok {
		return nil, keyRefusal(e, now)
	}
	if !looksLikeAPIKey(key) || !validKeyChecksum(key) {
		return nil, invalidToken(token.KindAPIKey, errKeyMalformed)
	}
	id := keyID(key)
	if g.revoked.has(revocation{token.KindAPIKey, id}, now) {
		return nil, &denial{status: http.StatusUnauthorized, code: "invalid_token", kind: token.KindAPIKey, keyID: id, err: errRevoked}
	}
	res, err := g.verifyKey(ctx, h, key, ip)
	if err != nil {
		return nil, &denial{status: http.StatusServiceUnavailable, code: "temporarily_unavailable",
			retryAfter: time.Second, kind: token.KindAPIKey, keyID: id, err: err}
	}
	now = g.now()
	gen := g.gen.Load()
	if !res.Active {
		e := &keyEntry{until: now.Add(g.missTTL)}
		if res.RetryAfter > 0 {
			e.retryAfter = now.Add(res.RetryAfter)
			e.until = minTime(e.until, e.retryAfter)
		}
		g.misses.put(h, e, now)
		d := keyRefusal(e, now)
		d.keyID = id
		return nil, d
	}
	p := res.Principal
	p.Kind = token.KindAPIKey
	if p.KeyID == "" {
		p.KeyID = id
	}
	switch {
	case g.revoked.has(revocation{token.KindAPIKey, p.KeyID}, now):
		// Checked after the answer: a revocation that arrived meanwhile, or
		// a Gatehouse replica that has not seen it yet, is not cached over.
		return nil, &denial{status: http.StatusUnauthorized, code: "invalid_token", kind: token.KindAPIKey, keyID: p.KeyID, err: errRevoked}
	case !p.ExpiresAt.IsZero() && !now.Before(p.ExpiresAt):
		return nil, &denial{status: http.StatusUnauthorized, code: "invalid_token", kind: token.KindAPIKey, keyID: p.KeyID, err: errKeyExpired}
	}
	if !res.Limited {
		until := now.Add(g.keyTTL)
		if !p.ExpiresAt.IsZero() {
			until = minTime(until, p.ExpiresAt)
		}
		g.hits.putIf(h, &keyEntry{active: true, principal: p, until: until}, now, &g.gen, gen)
	}
	return &p, nil
}

// keyRefusal is the denial for a cached refusal.
func keyRefusal(e *keyEntry, now time.Time) *denial {
	if now.Before(e.retryAfter) {
		return &denial{status: http.StatusTooManyRequests, code: "rate_limited", retryAfter: e.retryAfter.Sub(now),
			kind: token.KindAPIKey, err: errRateLimited}
	}
	return invalidToken(token.KindAPIKey, errKeyRefused)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// flight is one verification in progress, shared by the requests that
// present the same key from the same address meanwhile.
type flight struct {
	done chan struct{}
	res  KeyResult
	err  error
}

// verifyKey asks the KeyVerifier once for concurrent requests with the
// same key and address.
func (g *Guard) verifyKey(ctx context.Context, h keyHash, key string, ip netip.Addr) (KeyResult, error) {
	g.flightMu.Lock()
	if f, ok := g.flights[h]; ok {
		g.flightMu.Unlock()
		select {
		case <-f.done:
			return f.res, f.err
		case <-ctx.Done():
			return KeyResult{}, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	g.flights[h] = f
	g.flightMu.Unlock()

	// The verification outlives a client that goes away, since others may
	// be waiting for it; the KeyVerifier's own timeout bounds it.
	f.res, f.err = g.apiKeys.VerifyKey(context.WithoutCancel(ctx), key, ip)
	if f.err != nil && !errors.Is(f.err, ErrUnavailable) {
		f.err = errors.Join(ErrUnavailable, f.err)
	}
	g.flightMu.Lock()
	delete(g.flights, h)
	g.flightMu.Unlock()
	close(f.done)
	return f.res, f.err
}

// errorBody is the JSON body of a refusal: the error code only, plus a
// description for invalid_request.
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// deny answers a refused request and logs why.
func (g *Guard) deny(w http.ResponseWriter, req *http.Request, d *denial) {
	h := w.Header()
	switch d.status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusBadRequest:
		h.Set("WWW-Authenticate", g.challenge(d))
	}
	if d.retryAfter > 0 {
		secs := int64((d.retryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	h.Set("Cache-Control", "no-store")
	if d.code != "" {
		h.Set("Content-Type", "application/json")
		h.Set("X-Content-Type-Options", "nosniff")
	}
	w.WriteHeader(d.status)
	if d.code != "" {
		json.NewEncoder(w).Encode(errorBody{Error: d.code, Description: d.desc})
	}
	g.logDenial(req, d)
}

// challenge returns the WWW-Authenticate value for d (RFC 6750, section 3).
func (g *Guard) challenge(d *denial) string {
	c := `Bearer realm="` + g.realm + `"`
	if d.code != "" {
		c += `, error="` + d.code + `"`
	}
	if d.scope != "" {
		c += `, scope="` + d.scope + `"`
	}
	return c
}

func (g *Guard) logDenial(req *http.Request, d *denial) {
	level := slog.LevelInfo
	switch {
	case d.status == http.StatusServiceUnavailable:
		level = slog.LevelError
	case d.code == "":
		level = slog.LevelDebug
	}
	ctx := req.Context()
	if !g.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.Int("status", d.status),
		slog.String("method", req.Method),
		slog.String("path", req.URL.Path),
		slog.String("remote", req.RemoteAddr),
	}
	if d.code != "" {
		attrs = append(attrs, slog.String("error", d.code))
	}
	if d.kind != "" {
		attrs = append(attrs, slog.String("kind", string(d.kind)))
	}
	if d.keyID != "" {
		attrs = append(attrs, slog.String("key_id", d.keyID))
	}
	if d.err != nil {
		attrs = append(attrs, slog.String("reason", d.err.Error()))
	}
	g.log.LogAttrs(ctx, level, "guard: request refused", slices.Clip(attrs)...)
}
