package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// notifyChannel is the PostgreSQL channel the changes trigger notifies.
	notifyChannel = "gatehouse_changes"

	// followBatch is how many changes Follow reads per query.
	followBatch = 1000

	// degradedPoll is the poll interval on PostgreSQL while the LISTEN
	// connection is down, so changes still arrive within a second.
	degradedPoll = 250 * time.Millisecond

	// listenDialTimeout bounds one attempt to open the LISTEN connection,
	// during which Follow does not poll.
	listenDialTimeout = 2 * time.Second

	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
)

// Follow calls fn with every change after the sequence number after, in
// order and in batches, until ctx is done; then it returns ctx.Err(). fn
// runs on Follow's goroutine; Follow waits for it before reading more.
//
// Changes written by any process reach fn within about a second. On SQLite,
// Follow polls [Store.LastChange] every PollInterval (default 100 ms). On
// PostgreSQL, it LISTENs for notifications on a dedicated connection, polls
// every PollInterval (default 1 s) as a fallback, and while that connection
// is down, polls every 250 ms and reconnects with exponential backoff.
// Database errors are logged and retried; they do not end Follow. Cancel
// Follow before closing the Store.
func (s *Store) Follow(ctx context.Context, after int64, fn func([]Change)) error {
	f := &follower{s: s, cursor: after, fn: fn}
	if s.dialect == DialectPostgres {
		return f.listen(ctx)
	}
	return f.poll(ctx)
}

// follower holds the state of one Follow call.
type follower struct {
	s       *Store
	cursor  int64 // newest sequence number delivered
	fn      func([]Change)
	failing bool // the last catch-up failed; log recovery once
}

// catchUp delivers every change after the cursor.
func (f *follower) catchUp(ctx context.Context) {
	err := f.deliver(ctx)
	switch {
	case err != nil && ctx.Err() == nil && !f.failing:
		f.failing = true
		f.s.log.Warn("store: change feed: reading changes failed; retrying", "err", err)
	case err == nil && f.failing:
		f.failing = false
		f.s.log.Info("store: change feed: reading changes again")
	}
}

func (f *follower) deliver(ctx context.Context) error {
	last, err := f.s.LastChange(ctx)
	if err != nil || last <= f.cursor {
		return err
	}
	for {
		batch, err := f.s.Changes(ctx, f.cursor, followBatch)
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		f.fn(batch)
		f.cursor = batch[len(batch)-1].Seq
		if len(batch) < followBatch {
			return nil
		}
	}
}

// poll follows the feed by polling alone (SQLite).
func (f *follower) poll(ctx context.Context) error {
	t := time.NewTicker(f.s.poll)
	defer t.Stop()
	for {
		f.catchUp(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// listen follows the feed with LISTEN/NOTIFY plus a fallback poll
// (PostgreSQL).
func (f *follower) listen(ctx context.Context) error {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			closeQuietly(conn)
		}
	}()
	backoff := minBackoff
	var redial time.Time // when to try to connect again
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if conn == nil && !time.Now().Before(redial) {
			c, err := f.s.listenConn(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				f.s.log.Warn("store: change feed: LISTEN failed; polling meanwhile", "err", err, "retry_in", backoff)
				redial = time.Now().Add(backoff)
				backoff = min(2*backoff, maxBackoff)
			} else {
				conn, backoff = c, minBackoff
			}
		}
		// Catch up after LISTEN is in place, so nothing committed in
		// between is missed.
		f.catchUp(ctx)
		if conn == nil {
			wait := min(f.s.poll, degradedPoll, max(time.Until(redial), time.Millisecond))
			if err := sleep(ctx, wait); err != nil {
				return err
			}
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, f.s.poll)
		_, err := conn.WaitForNotification(wctx)
		timedOut := wctx.Err() != nil
		cancel()
		switch {
		case err == nil, ctx.Err() != nil:
		case timedOut && errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// Fallback poll.
		default:
			f.s.log.Warn("store: change feed: LISTEN connection lost; reconnecting", "err", err)
			closeQuietly(conn)
			conn = nil
			redial = time.Now().Add(backoff)
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// listenConn opens a dedicated connection and LISTENs on the changes
// channel.
func (s *Store) listenConn(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, listenDialTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, s.pgConfig.Copy())
	if err != nil {
		return nil, mapErr(err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		closeQuietly(conn)
		return nil, mapErr(err)
	}
	if s.onListen != nil {
		s.onListen(conn.PgConn().PID())
	}
	return conn, nil
}

func closeQuietly(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// sleep waits for d or until ctx is done, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
