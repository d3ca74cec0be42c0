package server

// The revocation feed: GET /feed/revocations streams, as Server-Sent
// Events, the revocations that verifiers caching credentials (guard, the
// gateway) must apply. It is fed by the server's one store.Follow loop
// through a hub that keeps a bounded backlog in memory; subscribers that
// are further behind are served from the store.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// FeedPath is the path of the revocation feed.
const FeedPath = "/feed/revocations"

// Event names of the feed. A verifier that does not know a name ignores
// the event.
const (
	// feedRevoked: the credential is refused from now on; the verifier
	// evicts it and remembers the id.
	feedRevoked = "revoked"
	// feedChanged: the API key's record changed (rotated, updated, or its
	// state is unknown); the verifier evicts its cached answer and asks
	// again on next use, but must not refuse the key for good.
	feedChanged = "changed"
	// feedReset: the verifier cannot be told what it missed and should
	// empty its caches.
	feedReset = "reset"
)

const (
	// feedBacklog bounds the events the hub keeps for subscribers that
	// reconnect; older ones are read from the store.
	feedBacklog = 4096
	// feedHeartbeat is how often an idle stream sends a comment line, so
	// that proxies keep it open and the verifier can tell it is alive.
	feedHeartbeat = 15 * time.Second
	// feedWriteTimeout bounds one write to a subscriber.
	feedWriteTimeout = 10 * time.Second
	// feedRetry is the reconnection delay suggested to SSE clients (ms).
	feedRetry = 1000
)

// feedEvent is one event of the feed. Its JSON form is the event's data.
type feedEvent struct {
	name string
	Kind string `json:"kind"` // "jwt" (ID is a "jti") or "apikey" (ID is a key ID)
	ID   string `json:"id"`
	Seq  int64  `json:"seq"` // the change-feed sequence number; also the SSE id
}

// feedHub fans the events out to every open stream. publish is called by
// the follow loop only; since and the subscriber count by the streams.
type feedHub struct {
	heartbeat time.Duration

	mu     sync.Mutex
	seq    int64         // newest change sequence number published
	floor  int64         // every event with Seq > floor is in events
	events []feedEvent   // oldest first, at most 2*feedBacklog
	wake   chan struct{} // closed and replaced by every publish

	subscribers prometheus.Gauge
}

func newFeedHub(seq int64) *feedHub {
	return &feedHub{heartbeat: feedHeartbeat, seq: seq, floor: seq, wake: make(chan struct{}),
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_feed_subscribers", Help: "Open revocation-feed streams.",
		})}
}

// publish appends evs, which must follow every event published before, and
// records that the changes up to seq have been seen.
func (h *feedHub) publish(evs []feedEvent, seq int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, evs...)
	if n := len(h.events); n > 2*feedBacklog {
		drop := n - feedBacklog
		h.floor = h.events[drop-1].Seq
		h.events = append([]feedEvent(nil), h.events[drop:]...)
	}
	h.seq = max(h.seq, seq)
	close(h.wake)
	h.wake = make(chan struct{})
}

// since returns the events after cursor, the newest sequence number seen,
// whether the backlog holds everything after cursor (false: read the store
// up to floor first), and a channel closed by the next publish.
func (h *feedHub) since(cursor int64) (evs []feedEvent, seq, floor int64, covered bool, wake <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cursor < h.floor {
		return nil, h.seq, h.floor, false, h.wake
	}
	i := sort.Search(len(h.events), func(i int) bool { return h.events[i].Seq > cursor })
	return append([]feedEvent(nil), h.events[i:]...), h.seq, h.floor, true, h.wake
}

// current returns the newest sequence number published.
func (h *feedHub) current() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq
}

// feedEvents turns changes into feed events. A "token_revoked" change is a
// revoked JWT. For an "api_key" change the key's record is read: a revoked
// key, or a rotated one past its grace period, is "revoked"; any other
// change (created, updated, rotated with grace, expired — expiry can be
// extended —, or a record that cannot be read) is "changed", an eviction
// that makes the verifier ask again. That costs one read per changed key,
// and API keys change rarely.
func (s *Server) feedEvents(ctx context.Context, changes []store.Change) []feedEvent {
	var evs []feedEvent
	now := s.cfg.Now()
	for _, c := range changes {
		switch c.Kind {
		case store.ChangeTokenRevoked:
			evs = append(evs, feedEvent{name: feedRevoked, Kind: "jwt", ID: c.Ref, Seq: c.Seq})
		case store.ChangeAPIKey:
			ev := feedEvent{name: feedChanged, Kind: "apikey", ID: c.Ref, Seq: c.Seq}
			k, err := s.store.APIKey(ctx, c.Ref)
			switch {
			case err == nil:
				if st := keyauth.Status(k, now); st == "revoked" || st == "rotated" {
					ev.name = feedRevoked
				}
			case !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil:
				s.log.Warn("revocation feed: reading API key failed; sending an eviction", "key_id", c.Ref, "err", err)
			}
			evs = append(evs, ev)
		}
	}
	return evs
}

// publishChanges is the follow loop's hook: it runs after the server has
// applied the batch to its own state, so that a verifier evicting on an
// event and asking again gets the new answer.
func (s *Server) publishChanges(ctx context.Context, changes []store.Change) {
	if len(changes) == 0 {
		return
	}
	s.feed.publish(s.feedEvents(ctx, changes), changes[len(changes)-1].Seq)
}

// registerFeed adds GET /feed/revocations, for the admin token or a
// confidential OAuth client (client_secret_basic), and the feed's metrics.
func (s *Server) registerFeed(mux *http.ServeMux) {
	auth := keyauth.AnyOf(keyauth.BearerToken(s.cfg.AdminToken, "admin"), s.oauth.ClientAuthenticator())
	mux.HandleFunc("GET "+FeedPath, func(w http.ResponseWriter, r *http.Request) { s.serveFeed(w, r, auth) })
	s.metrics.registry.MustRegister(s.feed.subscribers, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gatehouse_feed_seq", Help: "Newest change-feed sequence number published to the revocation feed.",
	}, func() float64 { return float64(s.feed.current()) }))
}

// streamsKey is the context key of the channel Serve closes when it begins
// shutting down: http.Server.Shutdown does not end streaming responses.
type streamsKey struct{}

func withStreamsDone(ctx context.Context, done <-chan struct{}) context.Context {
	return context.WithValue(ctx, streamsKey{}, done)
}

// streamsDone returns the channel of withStreamsDone, or nil (never ready)
// when the handler runs outside Serve.
func streamsDone(ctx context.Context) <-chan struct{} {
	done, _ := ctx.Value(streamsKey{}).(<-chan struct{})
	return done
}

// serveFeed streams the feed. The cursor is the Last-Event-ID header or
// the "after" query parameter (a sequence number, not a secret). Without
// one, the stream starts with the current access-token denylist and then
// follows new events.
func (s *Server) serveFeed(w http.ResponseWriter, r *http.Request, auth keyauth.Authenticator) {
	w.Header().Set("Cache-Control", "no-store")
	if _, ok, err := auth(r); err != nil {
		s.log.Warn("revocation feed: authenticating the caller failed", "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	} else if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	cursor, fromID := int64(-1), r.Header.Get("Last-Event-ID")
	if fromID == "" {
		fromID = r.URL.Query().Get("after")
	}
	if fromID != "" {
		n, err := strconv.ParseInt(fromID, 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "Last-Event-ID and after must be a sequence number", http.StatusBadRequest)
			return
		}
		cursor = n
	}

	rc := http.NewResponseController(w)
	// The server's read timeout would otherwise end the stream (net/http
	// cancels the request when its background read times out).
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s.feed.subscribers.Inc()
	defer s.feed.subscribers.Dec()

	st := &feedStream{w: w, rc: rc}
	st.printf("retry: %d\n\n", feedRetry)
	if err := s.streamFeed(r.Context(), st, cursor); err != nil && r.Context().Err() == nil {
		s.log.Debug("revocation feed: stream ended", "err", err)
	}
}

// streamFeed writes events after cursor (-1: none given) until the client
// goes away, a write fails, or the server shuts down.
func (s *Server) streamFeed(ctx context.Context, st *feedStream, cursor int64) error {
	shutdown := streamsDone(ctx)
	if cursor < 0 {
		cursor = s.feed.current()
		if err := s.sendDenylist(ctx, st, cursor); err != nil {
			return err
		}
	} else if last, err := s.store.LastChange(ctx); err == nil && cursor > last {
		// The client's cursor is from another store (or a restored one):
		// it cannot be told what it missed.
		cursor = s.feed.current()
		st.event(feedReset, strconv.FormatInt(cursor, 10), []byte(`{"seq":`+strconv.FormatInt(cursor, 10)+`}`))
	}
	hb := time.NewTicker(s.feed.heartbeat)
	defer hb.Stop()
	for {
		evs, seq, floor, covered, wake := s.feed.since(cursor)
		if !covered {
			next, err := s.replay(ctx, st, cursor, floor)
			if err != nil {
				return err
			}
			cursor = next
			continue
		}
		for _, ev := range evs {
			st.send(ev)
		}
		if seq > cursor {
			// Move the client's Last-Event-ID past changes it needs
			// nothing from, so a reconnect does not replay them.
			cursor = seq
			st.printf("id: %d\n\n", cursor)
		}
		if err := st.flush(); err != nil {
			return err
		}
		select {
		case <-wake:
		case <-hb.C:
			st.printf(": ping\n\n")
		case <-shutdown:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// replay sends the events after cursor, up to floor, from the store, and
// returns the new cursor.
func (s *Server) replay(ctx context.Context, st *feedStream, cursor, floor int64) (int64, error) {
	changes, err := s.store.Changes(ctx, cursor, 1000)
	if err != nil {
		return cursor, err
	}
	for len(changes) > 0 && changes[len(changes)-1].Seq > floor {
		changes = changes[:len(changes)-1]
	}
	for _, ev := range s.feedEvents(ctx, changes) {
		st.send(ev)
	}
	if len(changes) < 1000 {
		cursor = floor
	} else {
		cursor = changes[len(changes)-1].Seq
	}
	st.printf("id: %d\n\n", cursor)
	return cursor, st.flush()
}

// sendDenylist sends every revoked access token that has not expired, for a
// client that starts without a cursor, then sets its cursor to seq (read
// before the denylist, so nothing revoked in between is missed).
func (s *Server) sendDenylist(ctx context.Context, st *feedStream, seq int64) error {
	revoked, err := s.store.RevokedTokens(ctx, s.cfg.Now())
	if err != nil {
		return err
	}
	for _, r := range revoked {
		// Without an id: a client cut off in the middle of the list
		// reconnects without a cursor and gets all of it again.
		data, err := json.Marshal(feedEvent{Kind: "jwt", ID: r.ID, Seq: seq})
		if err != nil {
			return err
		}
		st.event(feedRevoked, "", data)
	}
	st.printf("id: %d\n\n", seq)
	return st.flush()
}

// feedStream writes SSE messages; the first write error sticks and is
// returned by flush.
type feedStream struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf []byte
	err error
}

func (st *feedStream) printf(format string, args ...any) {
	st.buf = fmt.Appendf(st.buf, format, args...)
}

// send writes ev with its sequence number as the SSE id. Its fields are
// ids and kinds made by Gatehouse; JSON encoding keeps them on one line.
func (st *feedStream) send(ev feedEvent) {
	data, err := json.Marshal(ev)
	if err != nil && st.err == nil {
		st.err = err
	}
	st.event(ev.name, strconv.FormatInt(ev.Seq, 10), data)
}

// event writes one event; an empty id leaves the client's cursor as it is.
func (st *feedStream) event(name, id string, data []byte) {
	st.buf = append(st.buf, "event: "...)
	st.buf = append(st.buf, name...)
	if id != "" {
		st.buf = append(st.buf, "\nid: "...)
		st.buf = append(st.buf, id...)
	}
	st.buf = append(st.buf, "\ndata: "...)
	st.buf = append(st.buf, data...)
	st.buf = append(st.buf, "\n\n"...)
}

// flush writes the buffered messages and flushes them to the client.
func (st *feedStream) flush() error {
	if st.err != nil || len(st.buf) == 0 {
		return st.err
	}
	_ = st.rc.SetWriteDeadline(time.Now().Add(feedWriteTimeout))
	if _, err := st.w.Write(st.buf); err != nil {
		st.err = err
		return err
	}
	st.buf = st.buf[:0]
	st.err = st.rc.Flush()
	return st.err
}
