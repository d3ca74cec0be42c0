package keyauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// Paths of the HTTP endpoints.
const (
	VerifyPath    = "/apikeys/verify"
	AdminKeysPath = "/admin/apikeys"
)

// HeaderAPIKey is the header that carries an API key.
const HeaderAPIKey = "X-API-Key"

// maxBody bounds the JSON bodies of the endpoints.
const maxBody = 16 << 10

// Authenticator checks the credentials of a caller of the verification
// endpoint or the admin API. It returns the caller's name for the audit log;
// ok=false means the request carries no acceptable credentials (answered
// 401); err is for faults (answered 503).
type Authenticator func(r *http.Request) (caller string, ok bool, err error)

// BearerToken returns an Authenticator that accepts "Authorization: Bearer
// <want>" with the given caller name. The comparison takes the same time
// wherever the tokens differ, and leaks their lengths only as hashes. An
// empty want accepts nothing.
func BearerToken(want, caller string) Authenticator {
	wantSum := sha256.Sum256([]byte(want))
	return func(r *http.Request) (string, bool, error) {
		if want == "" {
			return "", false, nil
		}
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", false, nil
		}
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if subtle.ConstantTimeCompare(got[:], wantSum[:]) != 1 {
			return "", false, nil
		}
		return caller, true, nil
	}
}

// AnyOf returns an Authenticator that tries each of auths in order and
// accepts the first that accepts; a fault stops the search.
func AnyOf(auths ...Authenticator) Authenticator {
	return func(r *http.Request) (string, bool, error) {
		for _, a := range auths {
			if a == nil {
				continue
			}
			caller, ok, err := a(r)
			if err != nil || ok {
				return caller, ok, err
			}
		}
		return "", false, nil
	}
}

// Routes says who may call the HTTP endpoints. A nil Authenticator refuses
// every caller of its endpoints.
type Routes struct {
	// Verify authenticates the services that call POST /apikeys/verify.
	Verify Authenticator
	// Admin authenticates callers of the admin API under /admin/apikeys.
	Admin Authenticator
}

// Register adds the verification endpoint and the admin API to mux.
//
// POST /apikeys/verify checks a key on behalf of a service. The service
// authenticates itself (see [Routes]) in the Authorization header, and sends
// the key it was given either in the X-API-Key header or as the "key" member
// of a JSON body; the JSON body may also carry "remote_ip", the address of
// the client that presented the key, against which the key's IP allow-list
// is checked (without it, the service's own address is used). A key in the
// URL query string is refused with 400 and, if it is a real key, flagged as
// exposed. The answer is 200 with {"active": true, ...owner, scopes, expiry,
// rate limit...} or {"active": false} for every refusal, the same for an
// unknown key as for a wrong secret; only "rate_limited" is named, with
// retry_after, because it is not an authentication failure and the service
// should answer 429. When the store is unreachable the answer is 503.
//
// The admin API: GET/POST /admin/apikeys, GET/PATCH /admin/apikeys/{id},
// POST /admin/apikeys/{id}/rotate, POST /admin/apikeys/{id}/revoke and
// GET /admin/apikeys/{id}/events. Keys are shown only in the answers to
// create and rotate.
func (s *Service) Register(mux *http.ServeMux, rt Routes) {
	h := &handler{svc: s, rt: rt}
	mux.HandleFunc("POST "+VerifyPath, h.verify)
	mux.HandleFunc("GET "+AdminKeysPath, h.admin(h.list))
	mux.HandleFunc("POST "+AdminKeysPath, h.admin(h.create))
	mux.HandleFunc("GET "+AdminKeysPath+"/{id}", h.admin(h.show))
	mux.HandleFunc("PATCH "+AdminKeysPath+"/{id}", h.admin(h.update))
	mux.HandleFunc("POST "+AdminKeysPath+"/{id}/rotate", h.admin(h.rotate))
	mux.HandleFunc("POST "+AdminKeysPath+"/{id}/revoke", h.admin(h.revoke))
	mux.HandleFunc("GET "+AdminKeysPath+"/{id}/events", h.admin(h.events))
}

type handler struct {
	svc *Service
	rt  Routes
}

// errorJSON is the error body of every endpoint, shaped like RFC 6749
// section 5.2.
type errorJSON struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, desc string) {
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, errorJSON{Error: code, Description: desc})
}

// remoteAddr returns the address of the TCP peer.
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		a, _ := netip.ParseAddr(host)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

// queryKeyParams are query parameter names that say "this is a credential"
// even when the value is not a well-formed key.
var queryKeyParams = map[string]bool{"key": true, "api_key": true, "apikey": true, "api-key": true,
	"x-api-key": true, "access_token": true, "token": true}

// refuseQueryKeys answers 400 if the query string carries an API key or a
// credential parameter, flagging any real key found there as exposed. It
// reports whether it answered.
func (h *handler) refuseQueryKeys(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.RawQuery == "" {
		return false
	}
	raw, err := url.QueryUnescape(r.URL.RawQuery)
	if err != nil {
		raw = r.URL.RawQuery
	}
	found := apikey.FindIn(raw)
	suspicious := len(found) > 0
	for name := range r.URL.Query() {
		if queryKeyParams[strings.ToLower(name)] {
			suspicious = true
		}
	}
	if !suspicious {
		return false
	}
	ip := remoteAddr(r)
	for _, k := range found {
		if _, err := h.svc.ReportExposed(r.Context(), k, ip, WhereQuery); err != nil {
			h.svc.log.Warn("API key in query: could not flag it", "err", err)
		}
	}
	h.svc.log.Info("API key refused", "reason", string(apikey.ReasonInQuery), "source_ip", ip.String(), "path", r.URL.Path)
	writeError(w, http.StatusBadRequest, "invalid_request",
		"API keys are accepted only in the X-API-Key or Authorization header (or this endpoint's JSON body), "+
			"never in the URL query string, which proxies and browsers log; a real key sent this way is flagged as exposed and should be rotated")
	return true
}

// verifyRequest is the JSON body of POST /apikeys/verify.
type verifyRequest struct {
	Key      string `json:"key"`
	RemoteIP string `json:"remote_ip"`
}

// VerifyResponse is the answer of POST /apikeys/verify.
type VerifyResponse struct {
	Active     bool       `json:"active"`
	KeyID      string     `json:"key_id,omitempty"`
	Subject    string     `json:"sub,omitempty"`
	Owner      string     `json:"owner,omitempty"`
	Name       string     `json:"name,omitempty"`
	Scope      string     `json:"scope,omitempty"`
	Scopes     []string   `json:"scopes,omitempty"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	Exp        int64      `json:"exp,omitempty"`
	TokenType  string     `json:"token_type,omitempty"`
	RateLimit  *RateJSON  `json:"rate_limit,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	RetryAfter int        `json:"retry_after,omitempty"`
}

// RateJSON describes a key's rate limit: Limit requests per Window
// seconds, and what is Remaining of it (in verification answers).
type RateJSON struct {
	Limit     int    `json:"limit"`
	Window    string `json:"window"`
	Remaining *int   `json:"remaining,omitempty"`
}

func (h *handler) verify(w http.ResponseWriter, r *http.Request) {
	if h.refuseQueryKeys(w, r) {
		return
	}
	if _, ok := h.authenticate(w, r, h.rt.Verify); !ok {
		return
	}
	key := r.Header.Get(HeaderAPIKey)
	var req verifyRequest
	if r.ContentLength != 0 && r.Body != nil {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil || len(body) > maxBody {
			writeError(w, http.StatusBadRequest, "invalid_request", "the request body is unreadable or too large")
			return
		}
		if len(strings.TrimSpace(string(body))) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				writeError(w, http.StatusBadRequest, "invalid_request", `the body must be a JSON object: {"key": "...", "remote_ip": "..."}`)
				return
			}
		}
	}
	switch {
	case key != "" && req.Key != "":
		writeError(w, http.StatusBadRequest, "invalid_request", "send the key in the X-API-Key header or the body, not both")
		return
	case key == "":
		key = req.Key
	}
	if key == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", `no key: send it in the X-API-Key header or as {"key": "..."}`)
		return
	}
	ip := remoteAddr(r)
	if req.RemoteIP != "" {
		a, err := netip.ParseAddr(req.RemoteIP)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "remote_ip is not an IP address")
			return
		}
		ip = a.Unmap()
	}
	res, err := h.svc.Check(r.Context(), key, ip)
	if err != nil {
		h.svc.log.Error("API key verification failed: store unavailable", "err", err)
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "key verification is unavailable; retry later")
		return
	}
	if res.Reason != "" {
		resp := VerifyResponse{Active: false}
		if res.Reason == apikey.ReasonRateLimited {
			resp.Reason = string(res.Reason)
			resp.RetryAfter = int(max(1, (res.RetryAfter+time.Second-1)/time.Second))
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	p := res.Principal
	resp := VerifyResponse{Active: true, KeyID: p.KeyID, Subject: p.Subject, Owner: res.Owner, Name: res.Name,
		Scope: strings.Join(p.Scopes, " "), Scopes: p.Scopes, TokenType: "api_key"}
	if !p.ExpiresAt.IsZero() {
		t := p.ExpiresAt.UTC()
		resp.ExpiresAt, resp.Exp = &t, t.Unix()
	}
	if res.RateLimit > 0 {
		rem := res.Remaining
		resp.RateLimit = &RateJSON{Limit: res.RateLimit, Window: res.RateWindow.String(), Remaining: &rem}
	}
	writeJSON(w, http.StatusOK, resp)
}

// authenticate runs auth and answers 401 or 503 when it does not accept.
func (h *handler) authenticate(w http.ResponseWriter, r *http.Request, auth Authenticator) (string, bool) {
	if auth == nil {
		writeError(w, http.StatusUnauthorized, "invalid_client", "this endpoint is disabled: no credentials are configured for it")
		return "", false
	}
	caller, ok, err := auth(r)
	switch {
	case err != nil:
		h.svc.log.Error("authenticate caller", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "cannot authenticate callers now; retry later")
		return "", false
	case !ok:
		writeError(w, http.StatusUnauthorized, "invalid_client", "caller authentication failed")
		return "", false
	}
	return caller, true
}

// admin wraps an admin API handler with authentication and the query-key
// check.
func (h *handler) admin(fn func(w http.ResponseWriter, r *http.Request, by Actor)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.refuseQueryKeys(w, r) {
			return
		}
		caller, ok := h.authenticate(w, r, h.rt.Admin)
		if !ok {
			return
		}
		fn(w, r, Actor{Name: caller, IP: remoteAddr(r).String()})
	}
}

// View is the JSON form of a key record, as the admin API and the CLI
// show it. It never holds the key, except in Key, which only the answers to
// create and rotate fill in.
type View struct {
	ID         string     `json:"id"`
	Masked     string     `json:"masked"`
	Name       string     `json:"name"`
	Owner      string     `json:"owner,omitempty"`
	Status     string     `json:"status"`
	Scopes     []string   `json:"scopes"`
	AllowedIPs []string   `json:"allowed_ips,omitempty"`
	RateLimit  *RateJSON  `json:"rate_limit,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	UseCount   int64      `json:"use_count"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	ReplacedBy string     `json:"replaced_by,omitempty"`
	GraceUntil *time.Time `json:"grace_until,omitempty"`
	ExposedAt  *time.Time `json:"exposed_at,omitempty"`
	// Key is the whole key: shown once, at creation or rotation.
	Key string `json:"key,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// NewView returns the display form of k at time now.
func NewView(k store.APIKey, now time.Time) View {
	v := View{ID: k.ID, Masked: Masked(k), Name: k.Name, Owner: k.Owner, Status: Status(k, now),
		Scopes: k.Scopes, AllowedIPs: k.AllowedIPs, CreatedAt: k.CreatedAt.UTC(), UpdatedAt: k.UpdatedAt.UTC(),
		ExpiresAt: optTime(k.ExpiresAt), LastUsedAt: optTime(k.LastUsedAt), UseCount: k.UseCount,
		RevokedAt: optTime(k.RevokedAt), ReplacedBy: k.ReplacedBy, GraceUntil: optTime(k.GraceUntil),
		ExposedAt: optTime(k.ExposedAt)}
	if v.Scopes == nil {
		v.Scopes = []string{}
	}
	if k.RateLimit > 0 {
		v.RateLimit = &RateJSON{Limit: k.RateLimit, Window: k.RateWindow.String()}
	}
	return v
}

// ParseRate parses a rate limit such as "100/m", "10/s", "5000/h" or
// "30/10s": a count per window. "" and "0" mean unlimited.
func ParseRate(s string) (int, time.Duration, error) {
	if s == "" || s == "0" {
		return 0, 0, nil
	}
	num, per, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(num)
	if !ok || err != nil || n <= 0 {
		return 0, 0, fmt.Errorf("%w: rate limit %q: want COUNT/WINDOW, such as 100/m or 10/s", ErrInvalid, s)
	}
	var window time.Duration
	switch per {
	case "s", "sec", "second":
		window = time.Second
	case "m", "min", "minute":
		window = time.Minute
	case "h", "hour":
		window = time.Hour
	default:
		window, err = time.ParseDuration(per)
		if err != nil || window <= 0 {
			return 0, 0, fmt.Errorf("%w: rate limit %q: the window is s, m, h or a duration such as 10s", ErrInvalid, s)
		}
	}
	return n, window, nil
}

// paramsJSON is the body of create and update requests. In updates,
// absent members keep their values.
type paramsJSON struct {
	Name       *string    `json:"name"`
	Owner      *string    `json:"owner"`
	Scopes     *[]string  `json:"scopes"`
	ExpiresAt  *time.Time `json:"expires_at"`
	ExpiresIn  *string    `json:"expires_in"` // a Go duration, e.g. "720h"
	AllowedIPs *[]string  `json:"allowed_ips"`
	RateLimit  *string    `json:"rate_limit"` // "100/m"; "0" removes it
	Grace      *string    `json:"grace"`      // rotate only
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: the body is not the expected JSON object: %v", ErrInvalid, err)
	}
	return nil
}

// apply sets p's fields from j.
func (j *paramsJSON) apply(p *Params, now time.Time) error {
	if j.Name != nil {
		p.Name = *j.Name
	}
	if j.Owner != nil {
		p.Owner = *j.Owner
	}
	if j.Scopes != nil {
		p.Scopes = *j.Scopes
	}
	if j.AllowedIPs != nil {
		p.AllowedIPs = *j.AllowedIPs
	}
	switch {
	case j.ExpiresAt != nil && j.ExpiresIn != nil:
		return fmt.Errorf("%w: give expires_at or expires_in, not both", ErrInvalid)
	case j.ExpiresAt != nil:
		p.ExpiresAt = *j.ExpiresAt
	case j.ExpiresIn != nil && (*j.ExpiresIn == "" || *j.ExpiresIn == "0"):
		p.ExpiresAt = time.Time{}
	case j.ExpiresIn != nil:
		d, err := time.ParseDuration(*j.ExpiresIn)
		if err != nil || d <= 0 {
			return fmt.Errorf("%w: expires_in %q: want a positive duration such as 720h", ErrInvalid, *j.ExpiresIn)
		}
		p.ExpiresAt = now.Add(d)
	}
	if j.RateLimit != nil {
		n, w, err := ParseRate(*j.RateLimit)
		if err != nil {
			return err
		}
		p.RateLimit, p.RateWindow = n, w
	}
	return nil
}

// writeServiceError maps a service error to a status.
func (h *handler) writeServiceError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrInvalid), errors.Is(err, store.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid_request", strings.TrimPrefix(err.Error(), "keyauth: invalid request: "))
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such key")
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", "the key is revoked or was already rotated")
	case errors.Is(err, store.ErrUnavailable):
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the store is unavailable; retry later")
	default:
		h.svc.log.Error("API key admin API", "err", err)
		writeError(w, http.StatusInternalServerError, "server_error", "internal error")
	}
}

func (h *handler) list(w http.ResponseWriter, r *http.Request, _ Actor) {
	q := r.URL.Query()
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, "invalid_request", "limit must be 1 to 1000")
			return
		}
		limit = n
	}
	keys, err := h.svc.List(r.Context(), store.APIKeyFilter{Owner: q.Get("owner"), After: q.Get("after"), Limit: limit})
	if err != nil {
		h.writeServiceError(w, err)
		return
	}
	now := h.svc.now()
	out := struct {
		Keys []View `json:"keys"`
		Next string `json:"next,omitempty"`
	}{Keys: make([]View, 0, len(keys))}
	for _, k := range keys {
		out.Keys = append(out.Keys, NewView(k, now))
	}
	if len(keys) == limit {
		out.Next = keys[len(keys)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) create(w http.ResponseWriter, r *http.Request, by Actor) {
	var j paramsJSON
	if err := decodeBody(r, &j); err != nil {
		h.writeServiceError(w, err)
		return
	}
	var p Params
	if err := j.apply(&p, h.svc.now()); err != nil {
		h.writeServiceError(w, err)
		return
	}
	if j.Grace != nil {
		h.writeServiceError(w, fmt.Errorf("%w: grace applies to rotation only", ErrInvalid))
		return
	}
	rec, key, err := h.svc.Create(r.Context(), p, by)
	if err != nil {
		h.writeServiceError(w, err)
		return
	}
	v := NewView(rec, h.svc.now())
	v.Key = key.Plaintext()
	writeJSON(w, http.StatusCreated, v)
}

func (h *handler) show(w http.ResponseWriter, r *http.Request, _ Actor) {
	rec, err := h.svc.Show(r.Context(), r.PathValue("id"))
	if err != nil {
		h.writeServiceError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, NewView(rec, h.svc.now()))
}

func (h *handler) update(w http.ResponseWriter, r *http.Request, by Actor) {
	var j paramsJSON
	if err := decodeBody(r, &j); err != nil {
		h.writeServiceError(w, err)
		return
	}
	if j.Owner != nil || j.Grace != nil {
		h.writeServiceError(w, fmt.Errorf("%w: owner and grace cannot be updated", ErrInvalid))
		return
	}
	rec, err := h.svc.Show(r.Context(), r.PathValue("id"))
	if err != nil {
		h.writeServiceError(w, err)
		return
	}
	p := Params{Name: rec.Name, Owner: rec.Owner, Scopes: rec.Scopes, ExpiresAt: rec.ExpiresAt,
		AllowedIPs: rec.AllowedIPs, RateLimit: rec.RateLimit, RateWindow: rec.RateWindow}
	if err := j.apply(&p, h.svc.now()); err != nil {
		h.writeServiceError(w, err)
		return
	}
	rec, err = h.svc.Update(r.Context(), rec.ID, p, by)
	if err != nil {
		h.writeServiceError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, NewView(rec, h.svc.now()))
}

func (h *handler) rotate(w http.ResponseWriter, r *http.Request, by Actor) {
	var j struct {
		Grace *string `json:"grace"`
	}
	if err := decodeBody(r, &j); err != nil {
		h.writeServiceError(w, err)
		return
	}
	var grace time.Duration
	if j.Grace != nil {
		d, err := time.ParseDuration(*j.Grace)
		if err != nil || d < 0 {
			h.writeServiceError(w, fmt.Errorf("%w: grace %q: want a duration such as 24h, or 0s to end the old key now", ErrInvalid, *j.Grace))
			return
		}
		grace = d
		if d == 0 {
			grace = -1 // explicit zero: no grace
		}
	}
	old, created, key, err := h.svc.Rotate(r.Context(), r.PathValue("id"), grace, by)
	if err != nil {
		h.writeServiceError(w, err)
		return
	}
	now := h.svc.now()
	v := NewView(created, now)
	v.Key = key.Plaintext()
	writeJSON(w, http.StatusCreated, struct {
		View
		Old View `json:"replaces"`
	}{v, NewView(old, now)})
}

func (h *handler) revoke(w http.ResponseWriter, r *http.Request, by Actor) {
	rec, err := h.svc.Revoke(r.Context(), r.PathValue("id"), by)
	if err != nil {
		h.writeServiceError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, NewView(rec, h.svc.now()))
}

func (h *handler) events(w http.ResponseWriter, r *http.Request, _ Actor) {
	id := r.PathValue("id")
	if _, err := h.svc.Show(r.Context(), id); err != nil {
		h.writeServiceError(w, err)
		return
	}
	after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	evs, err := h.svc.Events(r.Context(), id, after, 1000)
	if err != nil {
		h.writeServiceError(w, err)
		return
	}
	type eventJSON struct {
		ID       int64           `json:"id"`
		At       time.Time       `json:"at"`
		Actor    string          `json:"actor,omitempty"`
		Event    string          `json:"event"`
		Outcome  string          `json:"outcome,omitempty"`
		Reason   string          `json:"reason,omitempty"`
		SourceIP string          `json:"source_ip,omitempty"`
		Details  json.RawMessage `json:"details,omitempty"`
	}
	out := make([]eventJSON, 0, len(evs))
	for _, e := range evs {
		out = append(out, eventJSON{e.ID, e.At, e.Actor, e.Event, e.Outcome, e.Reason, e.SourceIP, e.Details})
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out})
}
