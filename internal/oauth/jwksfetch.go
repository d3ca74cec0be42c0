package oauth

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// A dynamically registered client names its own jwks_uri, and Gatehouse
// fetches it when the client authenticates with private_key_jwt. Whoever
// holds the initial access token could otherwise make the server send
// requests into its own network (server-side request forgery: a cloud
// metadata service at 169.254.169.254, an admin port on localhost, a
// database on 10.0.0.5), and learn from the errors and timings what
// answers there. So, unless the operator allows it
// (Config.DCRAllowPrivateJWKSURI, for development and closed networks),
// the jwks_uri of a dynamically registered client
//
//   - may not name a loopback, private, link-local or otherwise non-public
//     address, or "localhost", when it is registered (a clear error), and
//   - is fetched by an HTTP client whose dialer refuses every connection to
//     such an address after DNS resolution, so a public name that resolves
//     (or is later rebound) to a private address, and a redirect to one,
//     fail too. That client ignores HTTP_PROXY: a proxy would be dialled
//     instead of the target and the check would see only the proxy.
//
// Clients registered by an operator (CLI, admin API) are trusted to name
// internal key servers and use the ordinary client.

// errPrivateAddress is returned when a dynamically registered client's
// jwks_uri leads to a non-public address.
var errPrivateAddress = errors.New("jwks_uri leads to a non-public address")

// nonPublic lists IPv4 ranges that netip's predicates do not cover and
// that are not reachable on the public internet (RFC 6890).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),
}

// publicAddr reports whether a is a public unicast address.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsGlobalUnicast() || a.IsPrivate() {
		return false // loopback, link-local, multicast, unspecified, RFC 1918, fc00::/7
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// checkPublicURI refuses a jwks_uri whose host is "localhost" or an IP
// literal that is not public. Names are checked again when dialled.
func checkPublicURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return errPrivateAddress
	}
	if a, err := netip.ParseAddr(host); err == nil && !publicAddr(a) {
		return errPrivateAddress
	}
	return nil
}

// newPublicOnlyClient returns the HTTP client for the jwks_uri of
// dynamically registered clients: it connects to public addresses only,
// over https only (redirects included), without a proxy.
func newPublicOnlyClient() *http.Client {
	dialer := &net.Dialer{
		Timeout: 5 * time.Second,
		// Control runs after resolution, once per address tried, with the
		// address about to be connected: the check cannot be raced by DNS.
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %q", errPrivateAddress, address)
			}
			if !publicAddr(ap.Addr()) {
				return fmt.Errorf("%w: %s", errPrivateAddress, ap.Addr())
			}
			return nil
		},
	}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         dialer.DialContext,
			TLSHandshakeTimeout: 5 * time.Second,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many jwks_uri redirects")
			}
			if req.URL.Scheme != "https" {
				return errors.New("jwks_uri redirect to a non-https URL")
			}
			return checkPublicURI(req.URL.String())
		},
	}
}
