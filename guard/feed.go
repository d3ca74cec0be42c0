package guard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/token"
)

// Defaults of a FeedConfig.
const (
	// DefaultFeedIdleTimeout is how long a feed stream may stay silent
	// (Gatehouse sends a heartbeat every 15 s) before the Guard reconnects.
	DefaultFeedIdleTimeout = 45 * time.Second
	// DefaultFeedMaxBackoff is the longest wait between reconnections.
	DefaultFeedMaxBackoff = 30 * time.Second
)

const (
	feedMinBackoff = 100 * time.Millisecond
	// feedStable is how long a stream must have lasted for the next
	// reconnection to start again from the shortest wait.
	feedStable = 10 * time.Second
	// maxSSELine and maxSSEData bound what the feed parser holds.
	maxSSELine = 16 << 10
	maxSSEData = 64 << 10
)

// errFeedIdle ends a stream that sent nothing for the idle timeout.
var errFeedIdle = errors.New("guard: revocation feed: no heartbeat")

// FeedConfig configures [Guard.Follow]. Set either Token or ClientID and
// ClientSecret.
type FeedConfig struct {
	// URL is Gatehouse's revocation feed, such as
	// "https://auth.example.com/feed/revocations". It must be https, or
	// http on a loopback host. Required.
	URL string
	// Token is sent as "Authorization: Bearer <Token>" (Gatehouse's admin
	// token).
	Token string
	// ClientID and ClientSecret are a confidential OAuth client's
	// credentials, sent with HTTP Basic authentication.
	ClientID, ClientSecret string
	// Client makes the requests. The default follows redirects only to
	// https (or loopback) URLs and has no overall timeout, since a stream
	// lasts; IdleTimeout ends a silent one.
	Client *http.Client
	// IdleTimeout is how long a stream may send nothing before the Guard
	// drops it and reconnects. Zero means DefaultFeedIdleTimeout (45 s).
	IdleTimeout time.Duration
	// MaxBackoff bounds the wait between reconnections, which starts at
	// 100 ms and doubles. Zero means DefaultFeedMaxBackoff (30 s).
	MaxBackoff time.Duration
}

// FeedStatus reports the state of the revocation feed, for health checks
// and metrics. While the feed is down, revocations made meanwhile are
// applied when it reconnects (Gatehouse replays them); until then cache
// lifetimes bound the staleness: Config.KeyTTL for API keys, the token's
// own "exp" for JWTs.
type FeedStatus struct {
	// Connected is true while a stream is open and has not been silent
	// for longer than the idle timeout.
	Connected bool
	// LastMessage is when the last event or heartbeat arrived; zero if none.
	LastMessage time.Time
	// Seq is the newest change sequence number the feed reported.
	Seq int64
	// Events counts the events applied (revocations, evictions, resets).
	Events uint64
	// Failures counts connection attempts that failed and streams that
	// ended.
	Failures uint64
}

// feedState is the Guard's view of its feed, read by FeedStatus.
type feedState struct {
	following atomic.Bool
	connected atomic.Bool
	last      atomic.Int64 // Unix nanoseconds of the last message
	seq       atomic.Int64
	events    atomic.Uint64
	failures  atomic.Uint64
}

// FeedStatus returns the state of the revocation feed followed by
// [Guard.Follow].
func (g *Guard) FeedStatus() FeedStatus {
	st := FeedStatus{
		Connected: g.feed.connected.Load(),
		Seq:       g.feed.seq.Load(),
		Events:    g.feed.events.Load(),
		Failures:  g.feed.failures.Load(),
	}
	if ns := g.feed.last.Load(); ns != 0 {
		st.LastMessage = time.Unix(0, ns)
	}
	return st
}

// Follow subscribes the Guard to Gatehouse's revocation feed (Server-Sent
// Events) and applies its events until ctx is done: a revoked token or API
// key is evicted and refused at once ([Guard.Revoke]); a changed API key
// is evicted, so the next request asks Gatehouse again. When the stream
// breaks or stays silent, Follow reconnects with exponential backoff and
// the Last-Event-ID of the last event it saw, so Gatehouse replays what was
// missed. On its first connection Gatehouse sends the revoked access tokens
// that have not expired yet.
//
// Follow returns ctx.Err() when ctx is done, or at once an error for an
// invalid cfg or a second concurrent call. Run it in its own goroutine;
// [Guard.FeedStatus] tells whether the feed is up.
func (g *Guard) Follow(ctx context.Context, cfg FeedConfig) error {
	if err := checkURL(cfg.URL); err != nil {
		return fmt.Errorf("guard: feed: %w", err)
	}
	if (cfg.Token == "") == (cfg.ClientID == "") {
		return errors.New("guard: feed: set either Token or ClientID and ClientSecret")
	}
	if cfg.IdleTimeout < 0 || cfg.MaxBackoff < 0 {
		return errors.New("guard: feed: durations must not be negative")
	}
	cfg.IdleTimeout = orDefault(cfg.IdleTimeout, DefaultFeedIdleTimeout)
	cfg.MaxBackoff = orDefault(cfg.MaxBackoff, DefaultFeedMaxBackoff)
	if cfg.Client == nil {
		cfg.Client = &http.Client{CheckRedirect: safeRedirect}
	}
	if !g.feed.following.CompareAndSwap(false, true) {
		return errors.New("guard: feed: Follow is already running for this Guard")
	}
	defer g.feed.following.Store(false)

	backoff := feedMinBackoff
	cursor := ""
	for {
		began := time.Now()
		err := g.stream(ctx, cfg, &cursor)
		g.feed.connected.Store(false)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		g.feed.failures.Add(1)
		if time.Since(began) > feedStable {
			backoff = feedMinBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1) // jitter, so guards do not reconnect in step
		g.log.Warn("guard: revocation feed down; cache lifetimes bound staleness until it is back",
			"err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, cfg.MaxBackoff)
	}
}

// stream opens one feed stream and applies its events until it ends.
func (g *Guard) stream(ctx context.Context, cfg FeedConfig, cursor *string) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(cfg.IdleTimeout, func() { cancel(errFeedIdle) })
	defer idle.Stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
	} else {
		req.SetBasicAuth(cfg.ClientID, cfg.ClientSecret)
	}
	if *cursor != "" {
		req.Header.Set("Last-Event-ID", *cursor)
	}
	resp, err := cfg.Client.Do(req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		return fmt.Errorf("guard: revocation feed: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("guard: revocation feed: status %d", resp.StatusCode)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return fmt.Errorf("guard: revocation feed: content type %q, want text/event-stream", mt)
	}
	g.feed.connected.Store(true)
	g.feed.last.Store(time.Now().UnixNano())
	rd := newSSEReader(resp.Body)
	for {
		m, err := rd.next()
		if err != nil {
			if cause := context.Cause(ctx); cause != nil {
				return cause
			}
			return fmt.Errorf("guard: revocation feed: %w", err)
		}
		idle.Reset(cfg.IdleTimeout)
		g.feed.last.Store(time.Now().UnixNano())
		if m.hasData {
			g.applyFeedEvent(m.event, m.data)
		}
		if m.hasID {
			if n, err := strconv.ParseInt(m.id, 10, 64); err == nil && n >= 0 {
				*cursor = m.id
				g.feed.seq.Store(n)
			}
		}
	}
}

// applyFeedEvent applies one event; unknown events and kinds are ignored,
// so that Gatehouse can add them.
func (g *Guard) applyFeedEvent(event string, data []byte) {
	var ev struct {
		Kind token.Kind `json:"kind"`
		ID   string     `json:"id"`
	}
	switch event {
	case "reset":
		g.Flush()
	case "revoked", "changed":
		if err := json.Unmarshal(data, &ev); err != nil || ev.ID == "" ||
			ev.Kind != token.KindJWT && ev.Kind != token.KindAPIKey {
			return
		}
		if event == "revoked" {
			g.Revoke(ev.Kind, ev.ID)
		} else {
			g.evict(ev.Kind, ev.ID)
		}
	default:
		return
	}
	g.feed.events.Add(1)
}

// evict drops cached answers for a credential without refusing it later,
// for an API key whose record changed.
func (g *Guard) evict(kind token.Kind, id string) {
	g.gen.Add(1) // before evicting: see keyCache.putIf
	switch kind {
	case token.KindJWT:
		g.tokens.evict(kind, id)
	case token.KindAPIKey:
		g.hits.evict(kind, id)
	}
}

// sseMessage is one block of an event stream, up to a blank line.
type sseMessage struct {
	event   string // the "event" field; "" means "message"
	data    []byte // the "data" lines joined by "\n"
	hasData bool   // a "data" field was present: the event is dispatched
	id      string
	hasID   bool
}

// sseReader parses Server-Sent Events (the HTML Living Standard's
// "text/event-stream"), with lines ending in "\n" or "\r\n". Lines longer
// than 16 KiB and events with more than 64 KiB of data are errors.
type sseReader struct {
	r *bufio.Reader
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 4096)}
}

// next returns the next message, including messages without data (comments
// and bare ids), which reset the idle timer and may move the cursor.
func (s *sseReader) next() (sseMessage, error) {
	var m sseMessage
	seen := false
	for {
		line, err := s.line()
		if err != nil {
			return sseMessage{}, err
		}
		if len(line) == 0 {
			if seen {
				return m, nil
			}
			continue
		}
		seen = true
		if line[0] == ':' {
			continue // a comment, such as a heartbeat
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			m.event = string(value)
		case "data":
			if len(m.data)+len(value)+1 > maxSSEData {
				return sseMessage{}, errors.New("event data too long")
			}
			if m.hasData {
				m.data = append(m.data, '\n')
			}
			m.data = append(m.data, value...)
			m.hasData = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				m.id, m.hasID = string(value), true
			}
		}
	}
}

// line returns the next line without its line ending; it is valid until
// the next call.
func (s *sseReader) line() ([]byte, error) {
	line, err := s.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		long := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(long) > maxSSELine {
				return nil, errors.New("line too long")
			}
			line, err = s.r.ReadSlice('\n')
			long = append(long, line...)
		}
		line = long
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // a stream never ends on its own
		}
		return nil, err
	}
	if len(line) > maxSSELine {
		return nil, errors.New("line too long")
	}
	line = line[:len(line)-1]
	return bytes.TrimSuffix(line, []byte("\r")), nil
}
