package oauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// maxFormBytes bounds the body of the token, introspection and revocation
// endpoints.
const maxFormBytes = 64 << 10

// Scope limits: a request may name at most maxScopes scopes in at most
// maxScopeLen bytes.
const (
	maxScopes   = 100
	maxScopeLen = 4096
)

// grantFunc handles one grant type at the token endpoint, for an
// authenticated client that is allowed to use it. form holds the request's
// parameters, each present once.
type grantFunc func(w http.ResponseWriter, r *http.Request, c *store.Client, form url.Values)

// grantHandlers maps each supported grant_type to its handler; it is the
// one place that decides what the token endpoint accepts. Anything else,
// including "password" (removed in OAuth 2.1) and the implicit flow, gets
// unsupported_grant_type.
func (p *Provider) grantHandlers() map[string]grantFunc {
	return map[string]grantFunc{
		"client_credentials": p.grantClientCredentials,
		"authorization_code": p.grantAuthorizationCode,
		"refresh_token":      p.grantRefreshToken,

		GrantTypeTokenExchange: p.grantTokenExchange,
	}
}

// formType is the only content type of token, introspection and
// revocation requests.
const formType = "application/x-www-form-urlencoded"

// errForm marks the errors of parseForm.
var errForm = errors.New("oauth: bad request form")

// parseForm reads the parameters of a token, introspection or revocation
// request (RFC 6749 section 3.2): the body must be
// application/x-www-form-urlencoded in UTF-8, no parameter may appear twice,
// and the query string must be empty, so that no secret travels in a URL
// (where logs and proxies keep it).
func parseForm(contentType, rawQuery string, body []byte) (url.Values, error) {
	if rawQuery != "" {
		return nil, fmt.Errorf("%w: parameters must be sent in the request body, not the query string", errForm)
	}
	// The common exact form skips the general parser, which allocates.
	if !strings.EqualFold(contentType, formType) {
		mt, params, err := mime.ParseMediaType(contentType)
		if err != nil || mt != formType {
			return nil, fmt.Errorf("%w: content type must be application/x-www-form-urlencoded", errForm)
		}
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
			return nil, fmt.Errorf("%w: charset must be UTF-8", errForm)
		}
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("%w: malformed form body", errForm)
	}
	for name, vs := range form {
		if len(vs) > 1 {
			return nil, fmt.Errorf("%w: parameter %s is repeated", errForm, printableName(name))
		}
		if !utf8.ValidString(name) || !utf8.ValidString(vs[0]) {
			return nil, fmt.Errorf("%w: parameters must be UTF-8", errForm)
		}
	}
	return form, nil
}

// printableName returns name if it is a plausible parameter name, so that
// an error description never echoes arbitrary input.
func printableName(name string) string {
	if len(name) == 0 || len(name) > 40 {
		return "(name withheld)"
	}
	for _, r := range name {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return "(name withheld)"
		}
	}
	return name
}

// readForm reads and parses r's body with parseForm.
func readForm(r *http.Request) (url.Values, *oauthError) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxFormBytes+1))
	if err != nil {
		return nil, badRequest("could not read the request body")
	}
	if len(body) > maxFormBytes {
		return nil, badRequest("request body too large")
	}
	form, err := parseForm(r.Header.Get("Content-Type"), r.URL.RawQuery, body)
	if err != nil {
		return nil, badRequest(strings.TrimPrefix(err.Error(), errForm.Error()+": "))
	}
	return form, nil
}

// serveToken is the token endpoint (RFC 6749 section 3.2).
func (p *Provider) serveToken(w http.ResponseWriter, r *http.Request) {
	form, oe := readForm(r)
	if oe != nil {
		writeError(w, oe)
		return
	}
	gt := form.Get("grant_type")
	if gt == "" {
		writeTokenError(w, http.StatusBadRequest, errInvalidRequest, "grant_type is missing")
		return
	}
	grant, ok := p.grants[gt]
	if !ok {
		writeTokenError(w, http.StatusBadRequest, errUnsupportedGrantType, "unsupported grant_type")
		return
	}
	c, oe := p.authenticateClient(r.Context(), r, form, p.cfg.Issuer+TokenPath)
	if oe != nil {
		writeError(w, oe)
		return
	}
	if !p.allowClient(w, r, c) {
		return
	}
	if !slices.Contains(c.GrantTypes, gt) {
		writeTokenError(w, http.StatusBadRequest, errUnauthorizedClient, "the client may not use this grant type")
		return
	}
	grant(w, r, c, form)
}

// grantClientCredentials is the client credentials grant (RFC 6749 section
// 4.4): a confidential client gets an access token for itself. No refresh
// token is issued (section 4.4.3).
func (p *Provider) grantClientCredentials(w http.ResponseWriter, r *http.Request, c *store.Client, form url.Values) {
	if c.Public {
		writeTokenError(w, http.StatusBadRequest, errUnauthorizedClient, "public clients cannot use client_credentials")
		return
	}
	scopes, oe := grantedScopes(form.Get("scope"), c.Scopes)
	if oe != nil {
		writeError(w, oe)
		return
	}
	resp, err := p.issueTokens(r.Context(), c, c.ID, scopes, time.Time{})
	if err != nil {
		p.log.Error("token: issue", "client_id", c.ID, "err", err)
		writeError(w, faultError(err))
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// grantedScopes returns the scopes to grant for a requested scope
// parameter: every requested scope must be allowed; an absent parameter
// means all allowed scopes (RFC 6749 section 3.3 lets the server pick a
// default).
func grantedScopes(requested string, allowed []string) ([]string, *oauthError) {
	if requested == "" {
		return slices.Clone(allowed), nil
	}
	scopes, err := parseScope(requested)
	if err != nil {
		return nil, &oauthError{http.StatusBadRequest, errInvalidScope, err.Error()}
	}
	for _, s := range scopes {
		if !slices.Contains(allowed, s) {
			return nil, &oauthError{http.StatusBadRequest, errInvalidScope, "a requested scope is not allowed for this client"}
		}
	}
	return scopes, nil
}

// parseScope splits a scope parameter (RFC 6749 section 3.3) into its
// scope tokens, dropping duplicates and keeping the order. Tokens are
// separated by spaces and consist of printable ASCII other than '"' and
// '\'.
func parseScope(s string) ([]string, error) {
	if len(s) > maxScopeLen {
		return nil, errors.New("scope too long")
	}
	var out []string
	for tok := range strings.SplitSeq(s, " ") {
		if tok == "" {
			continue
		}
		if !validScopeToken(tok) {
			return nil, errors.New("malformed scope")
		}
		if !slices.Contains(out, tok) {
			out = append(out, tok)
		}
		if len(out) > maxScopes {
			return nil, errors.New("too many scopes")
		}
	}
	if len(out) == 0 {
		return nil, errors.New("empty scope")
	}
	return out, nil
}

// validScopeToken reports whether s is a scope-token: 1*( %x21 / %x23-5B /
// %x5D-7E ).
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < 0x21 || b > 0x7e || b == '"' || b == '\\' {
			return false
		}
	}
	return true
}

// tokenResponse is the successful token response (RFC 6749 section 5.1).
// The authorization-code and refresh grants add RefreshToken and IDToken.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`

	// claims are the access token's claims, for the caller (at_hash,
	// refresh-token records); not part of the response.
	claims token.Claims
}

// accessTokenAlg is the algorithm of c's access tokens.
func accessTokenAlg(c *store.Client) token.Algorithm {
	if c.AccessTokenAlg == "" {
		return token.ES256
	}
	return token.Algorithm(c.AccessTokenAlg)
}

// issueTokens issues an RFC 9068 JWT access token to client c for subject
// (a user ID, or the client ID for client credentials) with scopes, signed
// with the client's algorithm. Its audience is the client's audiences, or
// the issuer when it has none; its lifetime the client's, or the server
// default. authTime, when not zero, becomes "auth_time". A client with
// opaque access tokens gets an opaque token with the same claims instead
// (see issueAccessToken).
func (p *Provider) issueTokens(ctx context.Context, c *store.Client, subject string, scopes []string, authTime time.Time) (tokenResponse, error) {
	return p.issueAccessToken(ctx, c, subject, scopes, authTime, "")
}

// issueAccessToken is issueTokens for a token issued in refresh family
// familyID ("" for none); an opaque token is stored with its family so that
// revoking the family revokes it.
func (p *Provider) issueAccessToken(ctx context.Context, c *store.Client, subject string, scopes []string, authTime time.Time, familyID string) (tokenResponse, error) {
	cl, ttl, iss, err := p.accessClaims(c, subject, scopes, authTime)
	if err != nil {
		return tokenResponse{}, err
	}
	var raw string
	var final token.Claims
	if c.OpaqueAccessTokens() {
		raw, final, err = p.issueOpaque(ctx, cl, familyID)
	} else {
		raw, final, err = iss.Issue(cl)
	}
	if err != nil {
		return tokenResponse{}, err
	}
	return accessResponse(raw, final, ttl), nil
}

// accessClaims returns the claims of an access token for client c (see
// issueTokens) without "jti", its lifetime, and the issuer of c's JWTs.
func (p *Provider) accessClaims(c *store.Client, subject string, scopes []string, authTime time.Time) (token.Claims, time.Duration, *token.Issuer, error) {
	iss := p.issuers[accessTokenAlg(c)]
	if iss == nil {
		return token.Claims{}, 0, nil, fmt.Errorf("client %s: unsupported access token algorithm", c.ID)
	}
	ttl := c.AccessTokenTTL
	if ttl <= 0 {
		ttl = p.cfg.AccessTokenTTL
	}
	aud := c.Audiences
	if len(aud) == 0 {
		aud = []string{p.cfg.Issuer}
	}
	now := p.now()
	cl := token.Claims{
		Subject:   subject,
		Audience:  token.Audience(aud),
		IssuedAt:  now.Unix(),
		ExpiresAt: now.Add(ttl).Unix(),
		ClientID:  c.ID,
		Scope:     strings.Join(scopes, " "),
	}
	if !authTime.IsZero() {
		cl.AuthTime = authTime.Unix()
	}
	return cl, ttl, iss, nil
}

// accessResponse is the token response for the access token raw, whose
// claims are cl and lifetime ttl.
func accessResponse(raw string, cl token.Claims, ttl time.Duration) tokenResponse {
	return tokenResponse{
		AccessToken: raw,
		TokenType:   "Bearer",
		ExpiresIn:   int64(ttl / time.Second),
		Scope:       cl.Scope,
		claims:      cl,
	}
}
