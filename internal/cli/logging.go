package cli

import (
	"context"
	"errors"
	"log/slog"
)

// canceledQuiet is a slog.Handler that logs an error record whose error
// is a cancelled context at debug level instead of its own. A request's
// context is cancelled when the client closes the connection before the
// answer (a browser navigating away, a load balancer giving up, a load
// generator stopping), and a background job's when the server shuts down.
// Neither is a fault of the server, and under load the first would fill
// the log with errors nobody can act on. A deadline that expired
// (context.DeadlineExceeded) is a real slowness and keeps its level.
type canceledQuiet struct{ slog.Handler }

// Handle lowers the record's level when one of its attributes is an error
// that wraps context.Canceled, and drops it when the lower level is not
// enabled.
func (h canceledQuiet) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug && hasCanceled(r) {
		r.Level = slog.LevelDebug
		if !h.Handler.Enabled(ctx, r.Level) {
			return nil
		}
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the wrapper around the derived handler.
func (h canceledQuiet) WithAttrs(as []slog.Attr) slog.Handler {
	return canceledQuiet{h.Handler.WithAttrs(as)}
}

// WithGroup keeps the wrapper around the derived handler.
func (h canceledQuiet) WithGroup(name string) slog.Handler {
	return canceledQuiet{h.Handler.WithGroup(name)}
}

// hasCanceled reports whether an attribute of r is an error wrapping
// context.Canceled.
func hasCanceled(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && errors.Is(err, context.Canceled) {
			found = true
			return false
		}
		return true
	})
	return found
}
