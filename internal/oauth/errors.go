package oauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// OAuth error codes (RFC 6749 section 5.2, RFC 7009 section 2.2.1, RFC 6750
// section 3.1, RFC 7591 section 3.2.2).
const (
	errInvalidRequest       = "invalid_request"
	errInvalidClient        = "invalid_client"
	errInvalidGrant         = "invalid_grant"
	errUnauthorizedClient   = "unauthorized_client"
	errUnsupportedGrantType = "unsupported_grant_type"
	errInvalidScope         = "invalid_scope"
	errServerError          = "server_error"
	// errTemporarilyUnavailable is RFC 6749 section 4.1.2.1's code, also
	// used on the token endpoint with 503 when the store is unreachable.
	errTemporarilyUnavailable = "temporarily_unavailable"
	errUnsupportedTokenType   = "unsupported_token_type"
	errInvalidToken           = "invalid_token"
	errInvalidClientMeta      = "invalid_client_metadata"
	errInvalidRedirectURI     = "invalid_redirect_uri"
)

// oauthError is an error answer of the token, introspection, revocation
// and registration endpoints. Description is shown to the client: it must
// not contain secrets, and only the characters RFC 6749 section 5.2 allows.
type oauthError struct {
	Status      int
	Code        string
	Description string
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func badRequest(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, errInvalidRequest, desc}
}

func invalidClient(desc string) *oauthError {
	return &oauthError{http.StatusUnauthorized, errInvalidClient, desc}
}

func serverError() *oauthError {
	return &oauthError{http.StatusInternalServerError, errServerError, "internal error"}
}

// faultError is the answer to a server-side failure err: 503
// temporarily_unavailable when the store cannot be reached (the client
// may retry; nothing was changed or the change is safe to retry), 500
// server_error otherwise. The caller logs err; the answer never holds it.
func faultError(err error) *oauthError {
	if errors.Is(err, store.ErrUnavailable) {
		return &oauthError{http.StatusServiceUnavailable, errTemporarilyUnavailable, "the service is temporarily unavailable; retry later"}
	}
	return serverError()
}

// errorBody is the RFC 6749 section 5.2 error response.
type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// writeTokenError writes an RFC 6749 section 5.2 error response: a JSON
// object with "error" and "error_description", never cached. A 401
// invalid_client answer carries a WWW-Authenticate challenge for HTTP Basic,
// the scheme clients use to authenticate (section 5.2 requires it when the
// client used the Authorization header; sending it always is harmless).
func writeTokenError(w http.ResponseWriter, status int, code, description string) {
	h := w.Header()
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Basic realm="gatehouse", charset="UTF-8"`)
	}
	writeJSON(w, status, errorBody{Error: code, ErrorDescription: safeDescription(description)})
}

// writeError writes e with writeTokenError.
func writeError(w http.ResponseWriter, e *oauthError) {
	writeTokenError(w, e.Status, e.Code, e.Description)
}

// writeBearerError answers a request whose bearer token is missing or bad
// (RFC 6750 section 3): a WWW-Authenticate challenge with the error code
// (none when the request had no token at all, section 3.1) and the same
// JSON body as writeTokenError.
func writeBearerError(w http.ResponseWriter, status int, code, description string) {
	challenge := `Bearer realm="gatehouse"`
	if code != "" {
		challenge += `, error="` + code + `"`
		if d := safeDescription(description); d != "" {
			challenge += `, error_description="` + d + `"`
		}
	}
	w.Header().Set("WWW-Authenticate", challenge)
	if code == "" {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, errorBody{Error: code, ErrorDescription: safeDescription(description)})
}

// safeDescription keeps only the characters RFC 6749 section 5.2 allows in
// error_description (printable ASCII except '"' and '\'), so a description
// can never break a WWW-Authenticate header or smuggle control characters.
func safeDescription(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}

// writeJSON writes v as a JSON response that must not be cached (RFC 6749
// section 5.1).
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	h := w.Header()
	// Shared, never modified value slices: Header.Set would allocate one
	// per header per response on the token endpoint's hot path.
	h["Content-Type"] = headerJSON
	h["Cache-Control"] = headerNoStore
	h["Pragma"] = headerNoCache
	w.WriteHeader(status)
	w.Write(b)
}

// Header values of JSON answers, shared by every response (net/http only
// reads them; Header.Set and Header.Add replace or copy them).
var (
	headerJSON    = []string{"application/json"}
	headerNoStore = []string{"no-store"}
	headerNoCache = []string{"no-cache"}
)
