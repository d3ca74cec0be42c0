package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

// ErrUnavailable reports that a credential could not be checked because
// Gatehouse (its verification endpoint, discovery document or key set) did
// not answer usefully. The Guard answers such requests 503, not 401.
var ErrUnavailable = errors.New("guard: verification unavailable")

// KeyVerifier checks an API key with Gatehouse. [HTTPKeyVerifier] is the
// implementation that calls the verification endpoint; tests and
// in-process deployments can supply their own.
type KeyVerifier interface {
	// VerifyKey checks key on behalf of a client at remoteIP (the zero Addr
	// if unknown), against which the key's IP allow-list is checked. A
	// refused key is a KeyResult with Active false, not an error; an error
	// means the answer is unknown (Gatehouse unreachable or answering
	// nonsense) and must not contain the key.
	VerifyKey(ctx context.Context, key string, remoteIP netip.Addr) (KeyResult, error)
}

// KeyResult is the answer of a [KeyVerifier].
type KeyResult struct {
	// Active reports whether the key is accepted.
	Active bool
	// Principal describes the key's owner when Active. Its Kind is
	// token.KindAPIKey and KeyID the key's public id; ExpiresAt, if not
	// zero, bounds how long the Guard caches the answer.
	Principal token.Principal
	// Limited reports that the key has a rate limit, which Gatehouse counts
	// on every verification: the Guard does not cache such answers, so that
	// every request counts.
	Limited bool
	// RetryAfter, when positive, says the key was refused only because it is
	// over its rate limit; the Guard answers 429 with a Retry-After header.
	RetryAfter time.Duration
}

// DefaultVerifyPath is the path of Gatehouse's API key verification
// endpoint, relative to the issuer.
const DefaultVerifyPath = "/apikeys/verify"

// maxVerifyResponse bounds the body read from the verification endpoint.
const maxVerifyResponse = 64 << 10

// HTTPKeyVerifierConfig configures an [HTTPKeyVerifier].
type HTTPKeyVerifierConfig struct {
	// URL is the verification endpoint, such as
	// "https://auth.example.com/apikeys/verify". It must be https, or http
	// on a loopback host. Required.
	URL string
	// Token authenticates this service to the endpoint, sent as
	// "Authorization: Bearer <Token>" (Gatehouse's admin token).
	Token string
	// ClientID and ClientSecret are a confidential OAuth client's
	// credentials, sent with HTTP Basic authentication instead of Token.
	// Set either Token or both of these.
	ClientID, ClientSecret string
	// Client makes the requests. The default has a 5 s timeout. Redirects
	// are never followed, so the key is only ever sent to URL.
	Client *http.Client
}

// HTTPKeyVerifier is a [KeyVerifier] that asks Gatehouse's verification
// endpoint. It is safe for concurrent use.
//
// The wire contract: POST URL with "Authorization: Bearer <Token>" (or
// HTTP Basic with ClientID and ClientSecret),
// "Content-Type: application/json" and the body
//
//	{"key": "<the API key>", "remote_ip": "<client address>"}
//
// (remote_ip omitted when unknown). The endpoint answers 200 with
// {"active": true, "key_id", "sub", "scopes" (or "scope"), "exp" (Unix
// seconds, absent if the key does not expire), "rate_limit" (present if
// the key has one)}, or {"active": false} for every refusal, or
// {"active": false, "reason": "rate_limited", "retry_after": seconds}.
// Any other status, such as 503 or 401 for a wrong Token, is an error
// wrapping [ErrUnavailable].
type HTTPKeyVerifier struct {
	url    string
	authz  string
	client *http.Client
}

var _ KeyVerifier = (*HTTPKeyVerifier)(nil)

// NewHTTPKeyVerifier returns an HTTPKeyVerifier for cfg.
func NewHTTPKeyVerifier(cfg HTTPKeyVerifierConfig) (*HTTPKeyVerifier, error) {
	if err := checkURL(cfg.URL); err != nil {
		return nil, fmt.Errorf("guard: verification URL: %w", err)
	}
	var authz string
	switch {
	case cfg.Token != "" && cfg.ClientID != "":
		return nil, errors.New("guard: set either the verification endpoint Token or ClientID and ClientSecret")
	case cfg.ClientID != "":
		if cfg.ClientSecret == "" {
			return nil, errors.New("guard: verification endpoint ClientSecret is empty")
		}
		req := &http.Request{Header: http.Header{}}
		req.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(cfg.ClientSecret))
		authz = req.Header.Get("Authorization")
	case cfg.Token == "" || !isB64Token(cfg.Token):
		return nil, errors.New("guard: verification endpoint token is empty or not a valid bearer token")
	default:
		authz = "Bearer " + cfg.Token
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &HTTPKeyVerifier{url: cfg.URL, authz: authz, client: &c}, nil
}

// verifyRequest is the body sent to the verification endpoint.
type verifyRequest struct {
	Key      string `json:"key"`
	RemoteIP string `json:"remote_ip,omitempty"`
}

// verifyResponse is the answer of the verification endpoint.
type verifyResponse struct {
	Active     bool            `json:"active"`
	KeyID      string          `json:"key_id"`
	Subject    string          `json:"sub"`
	Scope      string          `json:"scope"`
	Scopes     []string        `json:"scopes"`
	Exp        int64           `json:"exp"`
	RateLimit  json.RawMessage `json:"rate_limit"`
	Reason     string          `json:"reason"`
	RetryAfter int             `json:"retry_after"`
}

// VerifyKey implements [KeyVerifier].
func (v *HTTPKeyVerifier) VerifyKey(ctx context.Context, key string, remoteIP netip.Addr) (KeyResult, error) {
	body := verifyRequest{Key: key}
	if remoteIP.IsValid() {
		body.RemoteIP = remoteIP.String()
	}
	b, err := json.Marshal(body)
	if err != nil {
		return KeyResult{}, fmt.Errorf("%w: encode request", ErrUnavailable)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.url, bytes.NewReader(b))
	if err != nil {
		return KeyResult{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req.Header.Set("Authorization", v.authz)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		// url.Error holds the URL, never the body: the key is not in it.
		return KeyResult{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxVerifyResponse+1))
	if err != nil {
		return KeyResult{}, fmt.Errorf("%w: read response: %w", ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return KeyResult{}, fmt.Errorf("%w: verification endpoint answered %d", ErrUnavailable, resp.StatusCode)
	}
	if len(data) > maxVerifyResponse {
		return KeyResult{}, fmt.Errorf("%w: verification response too large", ErrUnavailable)
	}
	var vr verifyResponse
	if err := json.Unmarshal(data, &vr); err != nil {
		return KeyResult{}, fmt.Errorf("%w: verification response is not the expected JSON", ErrUnavailable)
	}
	if !vr.Active {
		res := KeyResult{}
		if vr.Reason == "rate_limited" {
			res.RetryAfter = time.Duration(max(vr.RetryAfter, 1)) * time.Second
		}
		return res, nil
	}
	if vr.KeyID == "" || vr.Subject == "" {
		return KeyResult{}, fmt.Errorf("%w: active verification response without key_id or sub", ErrUnavailable)
	}
	scopes := vr.Scopes
	if scopes == nil {
		scopes = strings.Fields(vr.Scope)
	}
	p := token.Principal{Subject: vr.Subject, Scopes: scopes, Kind: token.KindAPIKey, KeyID: vr.KeyID}
	if vr.Exp > 0 {
		p.ExpiresAt = time.Unix(vr.Exp, 0)
	}
	limited := len(vr.RateLimit) > 0 && string(vr.RateLimit) != "null"
	return KeyResult{Active: true, Principal: p, Limited: limited}, nil
}
