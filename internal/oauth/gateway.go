package oauth

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// gatewayExchange is the token exchange of a gateway client
// ([store.Client.Gateway]): the gateway presents whatever credential its
// caller sent and gets the "phantom" token, a short-lived JWT for the
// upstream service, so that upstream services verify one kind of token
// with guard and never see API keys or opaque tokens.
//
// The subject may be:
//   - a Gatehouse access token, JWT or opaque (subject_token_type
//     urn:ietf:params:oauth:token-type:access_token or …:jwt). It must be
//     unexpired, unrevoked and meant for the gateway (mayKnow: issued to it
//     or for one of its Audiences, the external API).
//   - an API key (subject_token_type TokenTypeAPIKey), verified by the API
//     key service like any other use of the key: revoked, expired, rotated
//     past grace and rate-limited keys are refused. The gateway passes its
//     caller's address in ParamClientIP (the gateway itself calls from its
//     own address); the key's IP allow-list is checked against it, and a
//     key with an allow-list is refused when it is absent.
//
// The phantom token is always a JWT signed with the gateway client's
// algorithm, even when the gateway's own format is opaque: sub, scope,
// auth_time and client_id of the presented credential (for an API key,
// which has no client, client_id is the gateway's, since RFC 9068 requires
// one), a new jti, aud = the requested target (one of the gateway's
// ExchangeAudiences), gh_kind = the kind of the presented credential (jwt,
// opaque or apikey) and gh_key_id = the API key's ID. "act" adds the
// gateway ({"sub": gateway client ID}) on top of the subject's own chain.
// It lives for the gateway's access-token lifetime (60 s recommended, the
// CLI's default for gateways; at most maxExchangeTTL) and never past the
// subject's expiry. The scope parameter narrows the credential's scopes as
// in an ordinary exchange; the gateway's own Scopes do not restrict them
// (it passes its callers' credentials on, it does not hold scopes itself).
// A gateway sends no actor_token.
func (p *Provider) gatewayExchange(w http.ResponseWriter, r *http.Request, c *store.Client, req exchangeRequest, now time.Time) {
	ctx := r.Context()
	if req.actor != "" {
		writeError(w, badRequest("a gateway exchange takes no actor_token"))
		return
	}
	var sub *token.Claims
	var kind token.Kind
	var oe *oauthError
	if req.apiKey {
		sub, oe = p.apiKeySubject(ctx, c, req, now)
		kind = token.KindAPIKey
	} else {
		sub, kind, oe = p.exchangedToken(ctx, req.subject, "subject_token", now)
		if oe == nil && !mayKnow(c, sub) {
			oe = badRequest("the subject_token was not issued to or for this client")
		}
	}
	if oe != nil {
		writeError(w, oe)
		return
	}
	if actorDepth(sub.Actor) >= maxActorDepth {
		writeError(w, badRequest("the subject_token's delegation chain is too long"))
		return
	}
	scopes, oe := exchangeScopes(sub.Scopes(), req.scope, sub.Scopes())
	if oe != nil {
		writeError(w, oe)
		return
	}
	iss := p.issuers[accessTokenAlg(c)]
	if iss == nil {
		p.log.Error("gateway exchange: issue", "client_id", c.ID, "err", errExchangeAlg)
		writeError(w, serverError())
		return
	}
	exp := p.exchangeExpiry(c, sub, now)
	cl := token.Claims{
		Subject:   sub.Subject,
		Audience:  token.Audience{req.target},
		IssuedAt:  now.Unix(),
		ExpiresAt: exp,
		AuthTime:  sub.AuthTime,
		ClientID:  sub.ClientID,
		Scope:     strings.Join(scopes, " "),
		Actor:     &token.Actor{Subject: c.ID, Actor: sub.Actor},
		Kind:      kind,
		KeyID:     sub.KeyID,
	}
	if cl.ClientID == "" {
		cl.ClientID = c.ID
	}
	raw, final, err := iss.Issue(cl)
	if err != nil {
		p.log.Error("gateway exchange: issue", "client_id", c.ID, "err", err)
		writeError(w, serverError())
		return
	}
	writeJSON(w, http.StatusOK, exchangeResponse{
		AccessToken:     raw,
		IssuedTokenType: tokenTypeAccessToken,
		TokenType:       "Bearer",
		ExpiresIn:       final.ExpiresAt - final.IssuedAt,
		Scope:           final.Scope,
	})
}

// apiKeySubject verifies the API key of a gateway exchange for the caller
// at req.ip and returns it as claims (sub, scope, exp, gh_key_id). A key
// that is refused for any reason is invalid_request, without the reason
// (it is for the key's owner, in the audit log), except a rate-limited key,
// which is answered 429 with error "rate_limited" so the gateway can pass
// that on.
func (p *Provider) apiKeySubject(ctx context.Context, c *store.Client, req exchangeRequest, now time.Time) (*token.Claims, *oauthError) {
	if p.cfg.APIKeys == nil {
		return nil, badRequest("API keys are not enabled on this server")
	}
	pr, reason, err := p.cfg.APIKeys.Verify(ctx, req.subject, req.ip)
	switch {
	case err != nil:
		p.log.Error("gateway exchange: verify API key", "client_id", c.ID, "err", err)
		return nil, &oauthError{http.StatusServiceUnavailable, "temporarily_unavailable", "the API key cannot be verified now"}
	case reason == apikey.ReasonRateLimited:
		return nil, &oauthError{http.StatusTooManyRequests, "rate_limited", "the API key's rate limit is exhausted"}
	case reason != "":
		return nil, badRequest("the subject_token is invalid, expired or revoked")
	}
	cl := &token.Claims{
		Subject:  pr.Subject,
		ClientID: pr.ClientID,
		Scope:    strings.Join(pr.Scopes, " "),
		KeyID:    pr.KeyID,
	}
	if !pr.ExpiresAt.IsZero() {
		cl.ExpiresAt = pr.ExpiresAt.Unix()
		if cl.ExpiresAt <= now.Unix() {
			return nil, badRequest("the subject_token is invalid, expired or revoked")
		}
	}
	return cl, nil
}
