package oauth

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// revokeFunc revokes tok as one kind of token on behalf of client c. It
// returns ok=false when tok is not of its kind, so the next kind is tried.
// A token of its kind that is invalid, expired or not issued to c is
// ok=true and left alone (RFC 7009 section 2.2: the answer is 200 either
// way, which also tells other clients nothing about the token).
type revokeFunc func(ctx context.Context, c *store.Client, tok, hint string) (ok bool, err error)

// revokers lists the kinds of token the revocation endpoint knows, in the
// order they are tried.
func (p *Provider) revokers() []revokeFunc {
	return []revokeFunc{p.revokeAccessToken, p.revokeOpaque, p.revokeRefreshToken}
}

// serveRevoke is the revocation endpoint (RFC 7009). Confidential clients
// authenticate; public clients identify themselves with client_id. The
// token_type_hint is only a hint (section 2.1): every kind is tried.
func (p *Provider) serveRevoke(w http.ResponseWriter, r *http.Request) {
	p.flagKeysInQuery(r)
	form, oe := readForm(r)
	if oe != nil {
		writeError(w, oe)
		return
	}
	c, oe := p.authenticateClient(r.Context(), r, form, p.cfg.Issuer+RevokePath)
	if oe != nil {
		writeError(w, oe)
		return
	}
	tok := form.Get("token")
	if tok == "" {
		writeTokenError(w, http.StatusBadRequest, errInvalidRequest, "token is missing")
		return
	}
	for _, revoke := range p.revokers() {
		ok, err := revoke(r.Context(), c, tok, form.Get("token_type_hint"))
		if err != nil {
			p.log.Error("revoke", "client_id", c.ID, "err", err)
			writeError(w, faultError(err))
			return
		}
		if ok {
			break
		}
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(http.StatusOK)
}

// revokeAccessToken revokes one of Gatehouse's JWT access tokens issued to
// c: its "jti" goes on the denylist until the token expires, in the store
// (which records a store.ChangeTokenRevoked change for every other replica,
// guard and gateway) and in memory, so introspection rejects it at once.
func (p *Provider) revokeAccessToken(ctx context.Context, c *store.Client, tok, _ string) (bool, error) {
	cl, ok := p.verifyAccessToken(ctx, tok)
	if !ok {
		return looksLikeJWT(tok), nil
	}
	if cl.ClientID != c.ID {
		p.log.Warn("revoke: token of another client", "client_id", c.ID)
		return true, nil
	}
	exp := time.Unix(cl.ExpiresAt, 0)
	if err := p.store.RevokeToken(ctx, cl.ID, c.ID, exp); err != nil {
		return true, fmt.Errorf("revoke access token: %w", err)
	}
	p.revoked.add(cl.ID, cl.ExpiresAt, p.now())
	p.evictCached(cl.ID)
	return true, nil
}
