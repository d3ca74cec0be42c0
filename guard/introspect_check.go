package guard

import (
	"context"
	"errors"
	"slices"

	"github.com/gatehouse-dev/gatehouse/token"
)

// checkOpaque resolves an opaque access token: from the cache, or with the
// Introspector. Accepted answers are cached under a SHA-256 of the token
// until min(exp, OpaqueTTL), refusals for MissTTL.
func (g *Guard) checkOpaque(ctx context.Context, raw string, r *rule) (*token.Principal, *denial) {
	now := g.now()
	h := hashToken(raw)
	var p *token.Principal
	if e, ok := g.tokens.get(h, now); ok {
		p = &e.principal
	} else if _, ok := g.misses.get(h, now); ok {
		return nil, invalidToken(token.KindOpaque, errOpaqueRefused)
	} else {
		res, err := g.introspect(ctx, h, raw)
		if err != nil {
			return nil, unavailable(token.KindOpaque, err)
		}
		now = g.now()
		gen := g.gen.Load()
		var refusal error
		switch pr := res.Principal; {
		case !res.Active:
			refusal = errOpaqueRefused
		case pr.TokenID != "" && g.revoked.has(revocation{token.KindJWT, pr.TokenID}, now):
			// Checked after the answer: a revocation that arrived meanwhile
			// is not cached over.
			return nil, invalidToken(token.KindOpaque, errRevoked)
		case !pr.ExpiresAt.IsZero() && !now.Before(pr.ExpiresAt):
			refusal = errOpaqueExpired
		case !slices.Contains(pr.Audience, g.audience):
			refusal = errOpaqueAudience
		}
		if refusal != nil {
			g.misses.put(h, &keyEntry{until: now.Add(g.missTTL)}, now)
			return nil, invalidToken(token.KindOpaque, refusal)
		}
		e := &keyEntry{active: true, principal: res.Principal, until: now.Add(g.opaqueTTL)}
		e.principal.Kind = token.KindOpaque
		if !e.principal.ExpiresAt.IsZero() {
			e.until = minTime(e.until, e.principal.ExpiresAt)
		}
		g.tokens.putIf(h, e, now, &g.gen, gen)
		p = &e.principal
	}
	if r.audience != "" && !slices.Contains(p.Audience, r.audience) {
		return nil, invalidToken(token.KindOpaque, errPolicyAudience)
	}
	return p, nil
}

// introFlight is one introspection in progress, shared by the requests
// that present the same token meanwhile.
type introFlight struct {
	done chan struct{}
	res  IntrospectionResult
	err  error
}

// introspect asks the Introspector once for concurrent requests with the
// same token.
func (g *Guard) introspect(ctx context.Context, h keyHash, raw string) (IntrospectionResult, error) {
	g.flightMu.Lock()
	if f, ok := g.iflights[h]; ok {
		g.flightMu.Unlock()
		select {
		case <-f.done:
			return f.res, f.err
		case <-ctx.Done():
			return IntrospectionResult{}, ctx.Err()
		}
	}
	f := &introFlight{done: make(chan struct{})}
	g.iflights[h] = f
	g.flightMu.Unlock()

	// The call outlives a client that goes away, since others may be
	// waiting for it; the Introspector's own timeout bounds it.
	f.res, f.err = g.intro.Introspect(context.WithoutCancel(ctx), raw)
	if f.err != nil && !errors.Is(f.err, ErrUnavailable) {
		f.err = errors.Join(ErrUnavailable, f.err)
	}
	g.flightMu.Lock()
	delete(g.iflights, h)
	g.flightMu.Unlock()
	close(f.done)
	return f.res, f.err
}
