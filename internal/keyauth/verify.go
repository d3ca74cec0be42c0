package keyauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// Result is the full answer of [Service.Check].
type Result struct {
	// Principal describes the caller when the key is accepted.
	Principal token.Principal
	// Reason says why the key was refused; "" when it was accepted.
	Reason apikey.Reason
	// KeyID is the key's ID whenever the key was well-formed.
	KeyID string
	// Owner and Name are the key's, when the key was found.
	Owner, Name string
	// RateLimit and RateWindow are the key's limit (0: unlimited);
	// Remaining is what is left of it after this request, and RetryAfter,
	// when the key is over its limit, how long until a request is allowed.
	RateLimit  int
	RateWindow time.Duration
	Remaining  int
	RetryAfter time.Duration
	// GraceUntil is when a rotated key stops working; zero if not rotated.
	GraceUntil time.Time
}

// Verify checks a presented key on behalf of a caller at address ip (the
// zero Addr if unknown; then a key with an IP allow-list is refused). It
// returns the principal when the key is accepted; a [apikey.Reason] when it
// is refused; and an error only when the answer cannot be known, such as
// when the store is unreachable (the error wraps [store.ErrUnavailable]):
// fail closed, answer 503.
//
// Security: the reason is for the owner's logs and the audit log; callers
// must not show it to whoever presented the key, and must answer
// [apikey.ReasonUnknownID] and [apikey.ReasonWrongSecret] identically.
// Unknown IDs cost the same hash and compare as wrong secrets.
func (s *Service) Verify(ctx context.Context, plaintext string, ip netip.Addr) (token.Principal, apikey.Reason, error) {
	r, err := s.Check(ctx, plaintext, ip)
	return r.Principal, r.Reason, err
}

// Check is [Service.Verify] with the details the verification endpoint
// returns: owner, rate-limit state, rotation deadline.
func (s *Service) Check(ctx context.Context, plaintext string, ip netip.Addr) (Result, error) {
	r, e, err := s.check(ctx, plaintext, ip, true)
	if err != nil {
		return Result{}, err
	}
	if r.Reason != "" {
		s.refused(r, e, ip)
	} else {
		s.usage.add(r.KeyID, s.now(), ip)
	}
	return r, nil
}

// check does the work of Check; count says whether the request is a use
// of the key, which takes a token from its rate limit (when it is not, the
// rate limit is not consulted). It returns the cache entry when the key was
// found.
func (s *Service) check(ctx context.Context, plaintext string, ip netip.Addr, count bool) (Result, *entry, error) {
	key, err := s.format.Parse(plaintext)
	if err != nil {
		reason := apikey.ReasonOf(err)
		if reason == "" {
			reason = apikey.ReasonInvalidChar
		}
		return Result{Reason: reason}, nil, nil
	}
	r := Result{KeyID: key.ID}
	now := s.now()
	e, err := s.lookup(ctx, key.ID, now)
	if err != nil {
		return Result{}, nil, err
	}
	if e == nil {
		s.hasher.Equal(plaintext, s.dummyHash) // same work as a wrong secret
		r.Reason = apikey.ReasonUnknownID
		return r, nil, nil
	}
	if !s.hasher.Equal(plaintext, e.rec.Hash) {
		r.Reason = apikey.ReasonWrongSecret
		return r, e, nil
	}
	rec := &e.rec
	r.Owner, r.Name, r.GraceUntil = rec.Owner, rec.Name, rec.GraceUntil
	r.RateLimit, r.RateWindow = rec.RateLimit, rec.RateWindow
	switch {
	case !rec.RevokedAt.IsZero():
		r.Reason = apikey.ReasonRevoked
	case !rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt):
		r.Reason = apikey.ReasonExpired
	case rec.ReplacedBy != "" && !now.Before(rec.GraceUntil):
		r.Reason = apikey.ReasonRotated
	case len(e.nets) > 0 && !allowed(e.nets, ip):
		r.Reason = apikey.ReasonIPDenied
	}
	if r.Reason != "" {
		return r, e, nil
	}
	if rec.RateLimit > 0 && count {
		d, err := s.limiter.Allow(ctx, "apikey:"+rec.Family, rec.RateLimit, rec.RateWindow)
		if err != nil {
			return Result{}, nil, fmt.Errorf("%w: rate limit: %w", store.ErrUnavailable, err)
		}
		r.Remaining, r.RetryAfter = d.Remaining, d.RetryAfter
		if !d.Allowed {
			r.Reason = apikey.ReasonRateLimited
			return r, e, nil
		}
	}
	subject := rec.Owner
	if subject == "" {
		subject = rec.ID
	}
	exp := rec.ExpiresAt
	if rec.ReplacedBy != "" && (exp.IsZero() || rec.GraceUntil.Before(exp)) {
		exp = rec.GraceUntil
	}
	r.Principal = token.Principal{
		Subject:   subject,
		Scopes:    slices.Clone(rec.Scopes),
		Kind:      token.KindAPIKey,
		KeyID:     rec.ID,
		ExpiresAt: exp,
	}
	return r, e, nil
}

func allowed(nets []netip.Prefix, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// refused writes the log line and queues the audit event for a refusal.
func (s *Service) refused(r Result, e *entry, ip netip.Addr) {
	owner := ""
	if e != nil && r.Reason != apikey.ReasonWrongSecret {
		owner = e.rec.Owner
	}
	ipStr := ""
	if ip.IsValid() {
		ipStr = ip.String()
	}
	s.log.Info("API key refused", "key_id", r.KeyID, "owner", owner, "reason", string(r.Reason), "source_ip", ipStr)
	ev := store.AuditEvent{At: s.now(), Event: EventVerify, Target: r.KeyID, Outcome: OutcomeFailure,
		Reason: string(r.Reason), SourceIP: ipStr}
	if owner != "" {
		ev.Details = detailsJSON(map[string]any{"owner": owner})
	}
	s.auditLog.add(ev)
}

// ReportExposed handles a key seen where keys must never be, such as a URL
// query string (where says which): if plaintext is a valid key of this
// deployment (right secret, whatever its status), the key is marked exposed
// in the store and an audit event tells its owner to rotate it. It reports
// whether a real key was flagged. It does not count as a use of the key.
func (s *Service) ReportExposed(ctx context.Context, plaintext string, ip netip.Addr, where string) (bool, error) {
	r, e, err := s.check(ctx, plaintext, ip, false)
	if err != nil {
		return false, err
	}
	if e == nil || r.Reason == apikey.ReasonWrongSecret {
		return false, nil
	}
	ipStr := ""
	if ip.IsValid() {
		ipStr = ip.String()
	}
	if err := s.MarkExposed(ctx, e.rec, where, Actor{IP: ipStr}); err != nil {
		return false, err
	}
	return true, nil
}

// WhereQuery is the place [Service.ReportExposed] names for a key sent in
// a URL query string.
const WhereQuery = "url_query"

// MarkExposed records that key k was seen where keys must never be (where
// says where: "url_query", or a scanned file's location) and writes an
// audit event and a log line telling its owner to rotate it.
func (s *Service) MarkExposed(ctx context.Context, k store.APIKey, where string, by Actor) error {
	now := s.now()
	if err := s.st.MarkAPIKeyExposed(ctx, k.ID, now); err != nil {
		return fmt.Errorf("keyauth: %w", err)
	}
	s.log.Warn("API key exposed: rotate it", "key_id", k.ID, "owner", k.Owner, "where", where, "source_ip", by.IP)
	reason := ""
	if where == WhereQuery {
		reason = string(apikey.ReasonInQuery)
	}
	ev := store.AuditEvent{At: now, Actor: by.Name, Event: EventExposed, Target: k.ID, Outcome: "flagged",
		Reason: reason, SourceIP: by.IP, Details: detailsJSON(map[string]any{"owner": k.Owner, "where": where})}
	if err := s.st.AppendAudit(ctx, ev); err != nil {
		s.log.Error("audit: write event", "event", ev.Event, "key_id", ev.Target, "err", err)
	}
	return nil
}

// Hasher returns the hasher of stored keys, for scanners that compare what
// they find with the store (see [apikey.Scanner.Hasher]).
func (s *Service) Hasher() *apikey.Hasher { return s.hasher }

// Identify reads key id from the store and reports whether hash (a
// [apikey.Hasher.Hash] of a found key) is its hash, in constant time. A
// string with a real key's ID and a valid checksum but another secret is
// not the key. An unknown id is (zero, false, nil).
func (s *Service) Identify(ctx context.Context, id string, hash []byte) (store.APIKey, bool, error) {
	rec, err := s.st.APIKey(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.APIKey{}, false, nil
	case err != nil:
		return store.APIKey{}, false, fmt.Errorf("keyauth: %w", err)
	}
	return rec, subtle.ConstantTimeCompare(rec.Hash, hash) == 1, nil
}

// ---- cache --------------------------------------------------------------

// entry is one cached key record, with its allow-list parsed.
type entry struct {
	rec      store.APIKey
	nets     []netip.Prefix
	loadedAt time.Time
}

// maxNegative bounds the cache of unknown IDs.
const maxNegative = 10000

// cache holds key records by ID, and IDs known not to exist (so a flood of
// well-formed made-up keys does not reach the store more than once per ID).
type cache struct {
	mu      sync.RWMutex
	entries map[string]*entry
	missing map[string]time.Time // ID -> when it was found missing

	hits, misses atomic.Uint64 // lookups, for metrics
}

// CacheStats returns how many key lookups the in-memory cache answered
// (hits, unknown IDs included) and how many read the store (misses).
func (s *Service) CacheStats() (hits, misses uint64) {
	return s.cache.hits.Load(), s.cache.misses.Load()
}

func (c *cache) init() {
	c.entries = map[string]*entry{}
	c.missing = map[string]time.Time{}
}

// forget drops id from the cache, so the next lookup reads the store.
func (c *cache) forget(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	delete(c.missing, id)
	c.mu.Unlock()
}

func (c *cache) put(rec store.APIKey, now time.Time) *entry {
	e := &entry{rec: rec, loadedAt: now}
	for _, s := range rec.AllowedIPs {
		if p, err := parsePrefix(s); err == nil {
			e.nets = append(e.nets, p)
		} else {
			// A stored allow-list entry we cannot parse must not widen
			// access: an empty prefix matches nothing.
			e.nets = append(e.nets, netip.Prefix{})
		}
	}
	c.mu.Lock()
	c.entries[rec.ID] = e
	delete(c.missing, rec.ID)
	c.mu.Unlock()
	return e
}

func (c *cache) putMissing(id string, now time.Time) {
	c.mu.Lock()
	if len(c.missing) >= maxNegative {
		clear(c.missing)
	}
	c.missing[id] = now
	delete(c.entries, id)
	c.mu.Unlock()
}

// lookup returns the record of key id, from the cache if fresh, else from
// the store; nil if there is no such key.
func (s *Service) lookup(ctx context.Context, id string, now time.Time) (*entry, error) {
	s.cache.mu.RLock()
	e, ok := s.cache.entries[id]
	missingAt, missing := s.cache.missing[id]
	s.cache.mu.RUnlock()
	switch {
	case ok && now.Sub(e.loadedAt) < s.ttl:
		s.cache.hits.Add(1)
		return e, nil
	case missing && now.Sub(missingAt) < s.ttl:
		s.cache.hits.Add(1)
		return nil, nil
	}
	s.cache.misses.Add(1)
	return s.load(ctx, id, now)
}

func (s *Service) load(ctx context.Context, id string, now time.Time) (*entry, error) {
	rec, err := s.st.APIKey(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.cache.putMissing(id, now)
		return nil, nil
	case err != nil:
		// Fail closed: a record we cannot reread is not trusted either.
		s.cache.forget(id)
		return nil, fmt.Errorf("keyauth: look up key: %w", err)
	}
	return s.cache.put(rec, now), nil
}

// refresh rereads key id into the cache if it is cached, or forgets it.
func (s *Service) refresh(ctx context.Context, id string) {
	s.cache.mu.RLock()
	_, cached := s.cache.entries[id]
	s.cache.mu.RUnlock()
	if !cached {
		s.cache.forget(id)
		return
	}
	if _, err := s.load(ctx, id, s.now()); err != nil {
		s.log.Warn("API key cache: reload failed; key forgotten", "key_id", id, "err", err)
	}
}

// OnChange applies a batch of "api_key" changes from the change feed: each
// key that is cached is reread (or dropped when it cannot be), so a
// revocation made by any process is refused here within the feed's delay.
func (s *Service) OnChange(ctx context.Context, changes []store.Change) error {
	seen := map[string]bool{}
	for _, c := range changes {
		if c.Kind != store.ChangeAPIKey || seen[c.Ref] {
			continue
		}
		seen[c.Ref] = true
		s.refresh(ctx, c.Ref)
	}
	return nil
}

// Preload reads every key into the cache, so that the first verifications
// after start-up are warm.
func (s *Service) Preload(ctx context.Context) error {
	after := ""
	for {
		keys, err := s.st.APIKeys(ctx, store.APIKeyFilter{After: after, Limit: 1000})
		if err != nil {
			return fmt.Errorf("keyauth: preload: %w", err)
		}
		now := s.now()
		for _, k := range keys {
			s.cache.put(k, now)
		}
		if len(keys) < 1000 {
			return nil
		}
		after = keys[len(keys)-1].ID
	}
}

// ---- batched writes -----------------------------------------------------

// usage accumulates successful verifications of one key between flushes.
type usage struct {
	count int64
	last  time.Time
	ip    netip.Addr
}

type usageLog struct {
	mu sync.Mutex
	m  map[string]*usage
}

func (u *usageLog) add(id string, now time.Time, ip netip.Addr) {
	u.mu.Lock()
	e := u.m[id]
	if e == nil {
		e = &usage{}
		u.m[id] = e
	}
	e.count++
	e.last, e.ip = now, ip
	u.mu.Unlock()
}

// restore merges m, taken by a flush that could not write it, back into
// the log: counts add up and the later last-use time wins.
func (u *usageLog) restore(m map[string]*usage) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, old := range m {
		e := u.m[id]
		if e == nil {
			u.m[id] = old
			continue
		}
		e.count += old.count
		if old.last.After(e.last) {
			e.last, e.ip = old.last, old.ip
		}
	}
}

func (u *usageLog) take() map[string]*usage {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.m) == 0 {
		return nil
	}
	m := u.m
	u.m = make(map[string]*usage, len(m))
	return m
}

// auditQueue holds verification audit events until the next flush.
type auditQueue struct {
	mu      sync.Mutex
	events  []store.AuditEvent
	max     int
	dropped int64
}

func (q *auditQueue) add(ev store.AuditEvent) {
	q.mu.Lock()
	if len(q.events) < q.max {
		q.events = append(q.events, ev)
	} else {
		q.dropped++
	}
	q.mu.Unlock()
}

func (q *auditQueue) take() ([]store.AuditEvent, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	evs, d := q.events, q.dropped
	q.events, q.dropped = nil, 0
	return evs, d
}

// requeue puts back events a failed flush could not write, oldest first,
// as far as room allows.
func (q *auditQueue) requeue(evs []store.AuditEvent) {
	q.mu.Lock()
	defer q.mu.Unlock()
	room := q.max - len(q.events)
	if room <= 0 {
		q.dropped += int64(len(evs))
		return
	}
	if len(evs) > room {
		q.dropped += int64(len(evs) - room)
		evs = evs[:room]
	}
	q.events = append(evs, q.events...)
}

// Flush writes the pending last-used times and use counts, one audit event
// per key summarising its successful verifications since the last flush,
// and the queued refusal events. What it cannot write because the store is
// unreachable is kept for the next flush (refusal events up to the queue's
// bound), so a brief outage loses nothing.
func (s *Service) Flush(ctx context.Context) error {
	var errs []error
	if m := s.usage.take(); m != nil {
		uses := make([]store.APIKeyUse, 0, len(m))
		evs := make([]store.AuditEvent, 0, len(m))
		for id, u := range m {
			uses = append(uses, store.APIKeyUse{ID: id, Count: u.count, LastAt: u.last})
			ip := ""
			if u.ip.IsValid() {
				ip = u.ip.String()
			}
			evs = append(evs, store.AuditEvent{At: u.last, Event: EventVerify, Target: id, Outcome: OutcomeSuccess,
				SourceIP: ip, Details: detailsJSON(map[string]any{"count": u.count})})
		}
		if err := s.st.RecordAPIKeyUse(ctx, uses); err != nil {
			// The batch is one transaction: nothing of it was written, so
			// the next flush writes it, and its summary events, together
			// with the uses that come meanwhile.
			s.usage.restore(m)
			errs = append(errs, err)
		} else {
			s.auditLog.requeueFront(evs)
		}
	}
	evs, dropped := s.auditLog.take()
	if dropped > 0 {
		s.log.Warn("audit: verification events dropped: queue full", "dropped", dropped)
	}
	if len(evs) > 0 {
		if err := s.st.AppendAudit(ctx, evs...); err != nil {
			s.auditLog.requeue(evs)
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("keyauth: flush: %w", err)
	}
	return nil
}

// requeueFront adds events ahead of the queue without counting them
// against its bound (they summarise, so there are at most one per key).
func (q *auditQueue) requeueFront(evs []store.AuditEvent) {
	q.mu.Lock()
	q.events = append(evs, q.events...)
	q.mu.Unlock()
}

// Run flushes batched writes every FlushInterval until ctx is done, then
// flushes once more and returns.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.flush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.Flush(fctx); err != nil {
				s.log.Error("API keys: final flush", "err", err)
			}
			cancel()
			return
		case <-t.C:
			if err := s.Flush(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("API keys: flush", "err", err)
			}
		}
	}
}
