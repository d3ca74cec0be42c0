package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Sentinel errors. Errors returned by this package wrap them, so test with
// errors.Is.
var (
	// ErrNotFound means the requested record does not exist.
	ErrNotFound = errors.New("store: not found")

	// ErrConflict means the write lost a race or would duplicate a unique
	// value; nothing was changed.
	ErrConflict = errors.New("store: conflict")

	// ErrUnavailable means the database could not be reached or is busy;
	// the server answers 503 and the caller may retry later.
	ErrUnavailable = errors.New("store: database unavailable")

	// ErrSchemaTooNew means the database was migrated by a newer Gatehouse
	// than this binary; it refuses to run on a schema it does not know.
	ErrSchemaTooNew = errors.New("store: database schema is newer than this binary")

	// ErrReadOnly means the database refused a write because it is
	// read-only (a read-only file or mount, a PostgreSQL standby or
	// default_transaction_read_only). Errors wrapping it wrap
	// [ErrUnavailable] too: the server answers 503 and nothing is changed.
	ErrReadOnly = errors.New("store: database is read-only")

	// ErrInvalid means the caller passed an argument the store cannot
	// accept (an empty ID, a key that would not be the newest, ...).
	ErrInvalid = errors.New("store: invalid argument")
)

// mapErr wraps driver errors with the package's sentinels: sql.ErrNoRows
// becomes ErrNotFound, unique-constraint violations ErrConflict, and
// connection failures ErrUnavailable. It keeps errors that already wrap a
// sentinel, and nil, as they are.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict), errors.Is(err, ErrUnavailable),
		errors.Is(err, ErrSchemaTooNew), errors.Is(err, ErrInvalid):
		return err
	case errors.Is(err, sql.ErrNoRows):
		return ErrNotFound
	case isUniqueViolation(err):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	case isReadOnly(err):
		return fmt.Errorf("%w: %w: %w", ErrUnavailable, ErrReadOnly, err)
	case isConnectionError(err):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// isUniqueViolation reports a PRIMARY KEY or UNIQUE constraint failure.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505" // unique_violation
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		c := sqErr.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// isForeignKeyViolation reports a FOREIGN KEY constraint failure.
func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23503" // foreign_key_violation
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		return sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	return false
}

// mapUserRef maps the error of a write whose only foreign key is a user
// ID: a violation means the user does not exist, [ErrNotFound]. Other
// errors go through mapErr.
func mapUserRef(err error) error {
	if err != nil && isForeignKeyViolation(err) {
		return fmt.Errorf("%w: no such user", ErrNotFound)
	}
	return mapErr(err)
}

// isConnectionError reports failures to reach, or keep talking to, the
// database, as opposed to errors in a statement.
func isConnectionError(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"): // connection_exception class
			return true
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // shutdown, cannot connect now
			return true
		case pgErr.Code == "53300": // too_many_connections
			return true
		}
		return false
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		switch sqErr.Code() & 0xff { // primary result code
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN,
			sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL:
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // the caller gave up; context.DeadlineExceeded is also a net.Error
	}
	var netErr net.Error
	return errors.As(err, &netErr) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, pgconn.ErrConnClosed) || // the socket went away under a query
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// isSQLiteNotADatabase reports SQLITE_NOTADB and SQLITE_CORRUPT.
func isSQLiteNotADatabase(err error) bool {
	var sqErr *sqlite.Error
	if !errors.As(err, &sqErr) {
		return false
	}
	c := sqErr.Code() & 0xff
	return c == sqlite3.SQLITE_NOTADB || c == sqlite3.SQLITE_CORRUPT
}

// isReadOnly reports a write refused because the database is read-only.
func isReadOnly(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "25006" // read_only_sql_transaction
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		return sqErr.Code()&0xff == sqlite3.SQLITE_READONLY
	}
	return false
}
