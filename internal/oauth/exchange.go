package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// GrantTypeTokenExchange is the grant_type of OAuth 2.0 Token Exchange (RFC
// 8693 section 2.1). A client must be registered for it, and for the
// audiences it may exchange tokens for ([store.Client.ExchangeAudiences]).
const GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"

// Token type identifiers (RFC 8693 section 3). Gatehouse's access tokens
// are JWTs, so a subject or actor token may be named by either.
const (
	tokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	tokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
)

// TokenTypeAPIKey is the subject_token_type of an API key presented by a
// gateway client (see gatewayExchange).
const TokenTypeAPIKey = "urn:gatehouse:params:oauth:token-type:api_key"

// ParamClientIP is the token-exchange parameter in which a gateway client
// passes the address of the caller that presented an API key, so that the
// key's IP allow-list is checked against it.
const ParamClientIP = "gatehouse_client_ip"

// errInvalidTarget is the error code for an audience or resource the
// server will not issue a token for (RFC 8693 section 2.2.2, RFC 8707
// section 2).
const errInvalidTarget = "invalid_target"

// errExchangeAlg means a client's access-token algorithm has no issuer.
var errExchangeAlg = errors.New("oauth: unsupported access token algorithm")

// maxExchangeTTL bounds the lifetime of an exchanged token: it is meant for
// one service-to-service call chain, not for keeping.
const maxExchangeTTL = 5 * time.Minute

// maxActorDepth bounds the "act" chain of an exchanged token, so that
// repeated exchanges cannot grow a token past what verifiers accept.
const maxActorDepth = 8

// maxTargetLen bounds the audience or resource parameter (the same bound as
// a client's registered audiences).
const maxTargetLen = 512

// exchangeRequest is a parsed token-exchange request.
type exchangeRequest struct {
	subject string     // subject_token
	apiKey  bool       // subject_token_type is TokenTypeAPIKey
	ip      netip.Addr // ParamClientIP, the zero Addr if absent
	actor   string     // actor_token, "" if none
	target  string     // the one audience or resource
	scope   []string   // requested scopes, nil if none were requested
}

// parseExchange reads the parameters of a token-exchange request (RFC 8693
// section 2.1). Gatehouse issues one token for one target: the request
// names exactly one audience or resource (both may be sent if they are the
// same), and only access tokens are issued. Token types other than
// Gatehouse's JWT access tokens are refused with invalid_request, as
// section 2.2.2 requires for unacceptable tokens.
func parseExchange(form url.Values) (exchangeRequest, *oauthError) {
	var req exchangeRequest
	req.subject = form.Get("subject_token")
	switch {
	case req.subject == "":
		return req, badRequest("subject_token is missing")
	case form.Get("subject_token_type") == TokenTypeAPIKey:
		req.apiKey = true
	case !jwtTokenType(form.Get("subject_token_type")):
		return req, badRequest("subject_token_type must be " + tokenTypeAccessToken + " or " + tokenTypeJWT)
	}
	if form.Has(ParamClientIP) {
		ip, err := netip.ParseAddr(form.Get(ParamClientIP))
		if err != nil || ip.Zone() != "" {
			return req, badRequest(ParamClientIP + " must be an IP address")
		}
		req.ip = ip.Unmap()
	}
	req.actor = form.Get("actor_token")
	actorType := form.Get("actor_token_type")
	switch {
	case req.actor == "" && actorType != "":
		return req, badRequest("actor_token_type without actor_token")
	case req.actor != "" && !jwtTokenType(actorType):
		return req, badRequest("actor_token_type must be " + tokenTypeAccessToken + " or " + tokenTypeJWT)
	}
	if rt := form.Get("requested_token_type"); rt != "" && rt != tokenTypeAccessToken {
		return req, badRequest("requested_token_type must be " + tokenTypeAccessToken)
	}
	aud, res := form.Get("audience"), form.Get("resource")
	switch {
	case aud == "" && res == "":
		return req, badRequest("audience or resource is required")
	case aud != "" && res != "" && aud != res:
		return req, &oauthError{http.StatusBadRequest, errInvalidTarget, "only one target (audience or resource) per request"}
	case res != "" && !validResource(res):
		return req, &oauthError{http.StatusBadRequest, errInvalidTarget, "resource must be an absolute URI without a fragment"}
	}
	req.target = aud
	if req.target == "" {
		req.target = res
	}
	if len(req.target) > maxTargetLen || !printable(req.target) || strings.Contains(req.target, " ") {
		return req, &oauthError{http.StatusBadRequest, errInvalidTarget, "malformed target"}
	}
	if s := form.Get("scope"); s != "" {
		scopes, err := parseScope(s)
		if err != nil {
			return req, &oauthError{http.StatusBadRequest, errInvalidScope, err.Error()}
		}
		req.scope = scopes
	}
	return req, nil
}

// jwtTokenType reports whether t names a token type Gatehouse accepts as a
// subject or actor token.
func jwtTokenType(t string) bool {
	return t == tokenTypeAccessToken || t == tokenTypeJWT
}

// validResource reports whether s is an absolute URI without a fragment
// (RFC 8693 section 2.1, RFC 8707 section 2).
func validResource(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.IsAbs() && u.Fragment == "" && !strings.Contains(s, "#")
}

// exchangeResponse is the successful token-exchange response (RFC 8693
// section 2.2.1). No refresh token is issued.
type exchangeResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope,omitempty"`
}

// grantTokenExchange is the token-exchange grant (RFC 8693): a service
// that received an access token (the subject token) gets a new, short-lived
// access token for another service, on behalf of the same subject.
//
// The rules, all of which must hold:
//   - The target (audience or resource) is one of the calling client's
//     ExchangeAudiences; otherwise invalid_target.
//   - The subject token is one of Gatehouse's access tokens, unexpired and
//     not revoked, and it was either issued to the calling client or issued
//     for one of the calling client's own audiences (the client is the
//     resource server it was sent to; see mayKnow). A token a service merely
//     intercepted for somebody else cannot be exchanged. Otherwise
//     invalid_request (section 2.2.2).
//   - An actor token, if sent, is one of Gatehouse's access tokens issued to
//     the calling client; it names the actor.
//   - The scopes are those of the subject token that the client may also
//     request (store.Client.Scopes), narrowed further by a scope parameter;
//     a requested scope outside both is invalid_scope. Scopes are never
//     broadened.
//
// The new token has the subject token's "sub" and "auth_time", aud = the
// target, client_id = the calling client, and lives for the client's
// access-token lifetime, at most maxExchangeTTL and never past the subject
// token's expiry. Its "act" claim records the delegation (section 4.1): the
// calling client (or the actor token's subject) acts, on top of the
// subject token's own "act" chain. A client whose policy allows
// impersonation (MayImpersonate) and that sends no actor token gets a token
// that does not add it to the chain; the existing chain is kept either way.
//
// Revoking the subject token does not revoke tokens exchanged from it; their
// short lifetime bounds that window.
func (p *Provider) grantTokenExchange(w http.ResponseWriter, r *http.Request, c *store.Client, form url.Values) {
	if c.Public {
		writeTokenError(w, http.StatusBadRequest, errUnauthorizedClient, "public clients cannot use token exchange")
		return
	}
	req, oe := parseExchange(form)
	if oe != nil {
		writeError(w, oe)
		return
	}
	if !slices.Contains(c.ExchangeAudiences, req.target) {
		writeTokenError(w, http.StatusBadRequest, errInvalidTarget, "the client may not exchange tokens for this target")
		return
	}
	now := p.now()
	if c.Gateway {
		p.gatewayExchange(w, r, c, req, now)
		return
	}
	switch {
	case req.apiKey:
		writeTokenError(w, http.StatusBadRequest, errUnauthorizedClient, "only gateway clients may exchange API keys")
		return
	case req.ip.IsValid():
		writeError(w, badRequest(ParamClientIP+" is for gateway clients only"))
		return
	}
	sub, _, oe := p.exchangedToken(r.Context(), req.subject, "subject_token", now)
	if oe != nil {
		writeError(w, oe)
		return
	}
	if !mayKnow(c, sub) {
		writeError(w, badRequest("the subject_token was not issued to or for this client"))
		return
	}
	if actorDepth(sub.Actor) >= maxActorDepth {
		writeError(w, badRequest("the subject_token's delegation chain is too long"))
		return
	}
	act := sub.Actor
	switch {
	case req.actor != "":
		acl, _, oe := p.exchangedToken(r.Context(), req.actor, "actor_token", now)
		if oe != nil {
			writeError(w, oe)
			return
		}
		if acl.ClientID != c.ID {
			writeError(w, badRequest("the actor_token was not issued to this client"))
			return
		}
		act = &token.Actor{Subject: acl.Subject, Actor: sub.Actor}
		if acl.Subject != c.ID {
			act.ClientID = c.ID
		}
	case !c.MayImpersonate:
		act = &token.Actor{Subject: c.ID, Actor: sub.Actor}
	}
	scopes, oe := exchangeScopes(sub.Scopes(), req.scope, c.Scopes)
	if oe != nil {
		writeError(w, oe)
		return
	}
	resp, err := p.issueExchanged(r.Context(), c, sub, req.target, scopes, act, now)
	if err != nil {
		p.log.Error("token exchange: issue", "client_id", c.ID, "err", err)
		writeError(w, faultError(err))
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// exchangedToken resolves tok, the subject or actor token (named by param
// in error descriptions), as an unexpired, unrevoked Gatehouse access token,
// a JWT or an opaque token, and returns its claims (read-only) and kind.
func (p *Provider) exchangedToken(ctx context.Context, tok, param string, now time.Time) (*token.Claims, token.Kind, *oauthError) {
	cl, kind, ok, err := p.resolveAccessToken(ctx, tok)
	if err != nil {
		p.log.Error("token exchange: resolve "+param, "err", err)
		return nil, kind, serverError()
	}
	// The verifier allows clock-skew leeway; an exchange does not.
	if !ok || cl.ExpiresAt != 0 && cl.ExpiresAt <= now.Unix() {
		return nil, kind, badRequest("the " + param + " is invalid, expired or revoked")
	}
	return cl, kind, nil
}

// actorDepth returns the number of links in an "act" chain.
func actorDepth(a *token.Actor) int {
	n := 0
	for ; a != nil; a = a.Actor {
		n++
	}
	return n
}

// exchangeScopes returns the scopes of an exchanged token: the subject
// token's scopes that the client may request (allowed), in the subject
// token's order. If scopes were requested, exactly those are granted, and
// each must be in both sets.
func exchangeScopes(subject, requested, allowed []string) ([]string, *oauthError) {
	if requested != nil {
		for _, s := range requested {
			if !slices.Contains(subject, s) || !slices.Contains(allowed, s) {
				return nil, &oauthError{http.StatusBadRequest, errInvalidScope, "a requested scope is not in the subject_token or not allowed for this client"}
			}
		}
		return requested, nil
	}
	var out []string
	for _, s := range subject {
		if slices.Contains(allowed, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// exchangeExpiry is when a token exchanged by client c from subject sub
// expires: after the client's access-token lifetime, at most
// maxExchangeTTL, never after the subject.
func (p *Provider) exchangeExpiry(c *store.Client, sub *token.Claims, now time.Time) int64 {
	ttl := c.AccessTokenTTL
	if ttl <= 0 {
		ttl = p.cfg.AccessTokenTTL
	}
	exp := now.Add(min(ttl, maxExchangeTTL)).Unix()
	if sub.ExpiresAt != 0 {
		exp = min(exp, sub.ExpiresAt)
	}
	return exp
}

// issueExchanged issues the exchanged access token for client c (see
// grantTokenExchange for its claims): signed, or opaque for a client with
// opaque access tokens.
func (p *Provider) issueExchanged(ctx context.Context, c *store.Client, sub *token.Claims, target string, scopes []string, act *token.Actor, now time.Time) (exchangeResponse, error) {
	iss := p.issuers[accessTokenAlg(c)]
	if iss == nil {
		return exchangeResponse{}, errExchangeAlg
	}
	exp := p.exchangeExpiry(c, sub, now)
	cl := token.Claims{
		Subject:   sub.Subject,
		Audience:  token.Audience{target},
		IssuedAt:  now.Unix(),
		ExpiresAt: exp,
		AuthTime:  sub.AuthTime,
		ClientID:  c.ID,
		Scope:     strings.Join(scopes, " "),
		Actor:     act,
		Kind:      sub.Kind,
		KeyID:     sub.KeyID,
	}
	var raw string
	var final token.Claims
	var err error
	if c.OpaqueAccessTokens() {
		raw, final, err = p.issueOpaque(ctx, cl, "")
	} else {
		raw, final, err = iss.Issue(cl)
	}
	if err != nil {
		return exchangeResponse{}, err
	}
	return exchangeResponse{
		AccessToken:     raw,
		IssuedTokenType: tokenTypeAccessToken,
		TokenType:       "Bearer",
		ExpiresIn:       final.ExpiresAt - final.IssuedAt,
		Scope:           final.Scope,
	}, nil
}
