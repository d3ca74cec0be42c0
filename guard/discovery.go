package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

// maxDiscoveryDocument bounds the discovery document read.
const maxDiscoveryDocument = 1 << 20

// discoveryRetry is the least time between two failed discovery attempts.
const discoveryRetry = 5 * time.Second

// discoveryKeys is a token.KeySet that finds the issuer's jwks_uri in its
// metadata (RFC 8414, or OpenID Connect Discovery) on first use, then
// delegates to a token.RemoteKeySet for it.
type discoveryKeys struct {
	issuer string
	client *http.Client
	now    func() time.Time

	keys atomic.Pointer[token.RemoteKeySet]

	mu       sync.Mutex
	failedAt time.Time // last failed attempt, zero if none
	lastErr  error
}

// Key implements token.KeySet.
func (d *discoveryKeys) Key(ctx context.Context, kid string) (token.PublicKey, error) {
	ks := d.keys.Load()
	if ks == nil {
		var err error
		if ks, err = d.discover(ctx); err != nil {
			return token.PublicKey{}, err
		}
	}
	return ks.Key(ctx, kid)
}

// discover fetches the metadata, at most once per discoveryRetry while it
// fails.
func (d *discoveryKeys) discover(ctx context.Context) (*token.RemoteKeySet, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ks := d.keys.Load(); ks != nil {
		return ks, nil
	}
	if !d.failedAt.IsZero() && d.now().Sub(d.failedAt) < discoveryRetry {
		return nil, d.lastErr
	}
	jwksURL, err := d.fetchJWKSURL(ctx)
	if err == nil {
		var ks *token.RemoteKeySet
		ks, err = token.NewRemoteKeySet(token.RemoteKeySetConfig{URL: jwksURL, Client: d.client, Now: d.now})
		if err == nil {
			d.keys.Store(ks)
			return ks, nil
		}
	}
	d.failedAt = d.now()
	d.lastErr = fmt.Errorf("%w: discovery: %w", token.ErrKeySetUnavailable, err)
	return nil, d.lastErr
}

// metadataURLs returns where the issuer's metadata may be: the RFC 8414
// location (section 3.1: the well-known segment goes before the issuer's
// path), then the OpenID Connect one (the segment appended).
func metadataURLs(issuer string) ([]string, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, err
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	base := u.Scheme + "://" + u.Host
	return []string{
		base + "/.well-known/oauth-authorization-server" + path,
		base + path + "/.well-known/openid-configuration",
	}, nil
}

// fetchJWKSURL returns the jwks_uri of the issuer's metadata, trying each
// well-known location in turn.
func (d *discoveryKeys) fetchJWKSURL(ctx context.Context) (string, error) {
	urls, err := metadataURLs(d.issuer)
	if err != nil {
		return "", err
	}
	var errs []error
	for _, u := range urls {
		jwks, err := d.fetchMetadata(ctx, u)
		if err == nil {
			return jwks, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

func (d *discoveryKeys) fetchMetadata(ctx context.Context, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s answered %d", u, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDiscoveryDocument+1))
	if err != nil {
		return "", err
	}
	if len(data) > maxDiscoveryDocument {
		return "", fmt.Errorf("%s: document too large", u)
	}
	var md struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(data, &md); err != nil {
		return "", fmt.Errorf("%s: not a JSON metadata document", u)
	}
	// RFC 8414, section 3.3: the issuer in the document must be exactly
	// the one the metadata was fetched for.
	if md.Issuer != d.issuer {
		return "", fmt.Errorf("%s: issuer %q does not match %q", u, md.Issuer, d.issuer)
	}
	if md.JWKSURI == "" {
		return "", fmt.Errorf("%s: no jwks_uri", u)
	}
	return md.JWKSURI, nil
}

// checkURL checks that s is an absolute https URL, or http on a loopback
// host, with no user information or fragment.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL: %w", err)
	}
	if u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q is not an absolute URL without user information or fragment", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
	}
	return fmt.Errorf("%q must use https (http only on a loopback host)", s)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
