package apikey

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// DefaultMaxFileSize is the size above which [Scanner.ScanTree] skips a
// file when Scanner.MaxFileSize is zero.
const DefaultMaxFileSize = 256 << 20

// defaultBufSize is the size of the buffer a scan reads into.
const defaultBufSize = 256 << 10

// Reasons passed to Scanner.Skipped.
var (
	// ErrFileTooLarge means a file or blob is larger than the scanner's
	// MaxFileSize.
	ErrFileTooLarge = errors.New("apikey: file too large to scan")
	// ErrNotRegular means a path is a symbolic link, device, socket or
	// named pipe; scans never follow or open these.
	ErrNotRegular = errors.New("apikey: not a regular file")
)

// Finding is one key found by a [Scanner]. It holds no secret: the ID
// finds the key's record, and Hash (if requested) shows whether the
// finding is that key or a forgery carrying its ID.
type Finding struct {
	// Path is the file the key was found in (for git history, see
	// [Scanner.ScanGitHistory]).
	Path string
	// Line and Column give the key's first byte, both counted from 1;
	// Column counts bytes.
	Line, Column int
	// Offset is the byte offset of the key's first byte.
	Offset int64
	// Prefix, Env and ID are the key's public parts.
	Prefix, Env, ID string
	// Masked is the key's masked form (see [Key.Masked]).
	Masked string
	// Object and Commit are set by git history scans: the name of the
	// object (blob, commit or tag) holding the key, and the commit that
	// added it.
	Object, Commit string
	// Hash is the key's [Hasher.Hash] if the Scanner has a Hasher, else
	// nil. Compare it with the stored hash before calling a key live or
	// revoking it: the checksum is public, so anyone can write a string
	// with a real key's ID and a valid checksum.
	Hash []byte
}

// Scanner finds API keys with a valid checksum in text or binary data. It
// jumps from underscore to underscore with bytes.IndexByte, checks for an
// environment marker ("_live_" or "_test_"), and only then looks at the
// characters around it, so it runs at hundreds of MB/s on source code and
// faster on other text. A Scanner is safe for concurrent use if its fields
// are not changed.
type Scanner struct {
	// Prefixes are the key prefixes to look for. Empty means any valid
	// prefix (2 to 8 lowercase letters or digits), so keys of other
	// deployments are found too; the checksum keeps false positives to
	// about one in 2^32 candidates with the key's shape.
	Prefixes []string

	// MaxFileSize is the size in bytes above which ScanTree and
	// ScanGitHistory skip a file or blob. Zero means DefaultMaxFileSize;
	// negative means no limit.
	MaxFileSize int64

	// Skipped, if not nil, is called for each path a tree or history scan
	// does not read, with ErrFileTooLarge or ErrNotRegular.
	Skipped func(path string, reason error)

	// Hasher, if not nil, fills in Finding.Hash, so that a caller can
	// check a finding against the store without the plaintext.
	Hasher *Hasher

	bufSize  int // tests set small buffers to exercise chunk boundaries
	queueLen int // and a short queue between the git readers
}

// ScanReader reads r to the end and calls fn for each key found, in order
// of position; path is copied into each Finding. Keys that span the
// boundary between two reads are found. If fn returns an error, the scan
// stops and ScanReader returns that error. Each call allocates a 256 KiB
// buffer; ScanTree and ScanGitHistory reuse one for all files.
func (s *Scanner) ScanReader(r io.Reader, path string, fn func(Finding) error) error {
	if err := s.validate(); err != nil {
		return err
	}
	return s.scan(r, s.newBuffer(), func(f Finding) error {
		f.Path = path
		return fn(f)
	})
}

// FindIn returns every key with a valid checksum in s, of any prefix, in
// order of position: what a [Scanner] without Prefixes finds. It suits
// short strings, such as a URL's query string, for which ScanReader's
// buffer would be waste.
func FindIn(s string) []string {
	var keys []string
	for _, h := range (&Scanner{}).find([]byte(s), 0, len(s), nil) {
		keys = append(keys, s[h.start:h.start+h.prefixLen+window])
	}
	return keys
}

// ScanTree walks the file tree at root and scans every regular file. It
// does not follow symbolic links (not even root), does not descend into
// .git directories (use ScanGitHistory for those), and skips special files
// and files larger than MaxFileSize, reporting them to Skipped. Binary files
// are scanned like text: keys get compiled into binaries and copied into
// databases and archives too. An error reading a file or directory stops the
// walk and is returned, so that a CI check fails closed.
func (s *Scanner) ScanTree(ctx context.Context, root string, fn func(Finding) error) error {
	if err := s.validate(); err != nil {
		return err
	}
	buf := s.newBuffer()
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" && path != root {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			s.skip(path, ErrNotRegular)
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed since the directory was read
		}
		if err != nil {
			return err
		}
		if s.tooLarge(info.Size()) {
			s.skip(path, ErrFileTooLarge)
			return nil
		}
		return s.scanFile(path, buf, fn)
	})
}

func (s *Scanner) scanFile(path string, buf []byte, fn func(Finding) error) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	err = s.scan(f, buf, func(fd Finding) error {
		fd.Path = path
		return fn(fd)
	})
	if err != nil {
		return fmt.Errorf("apikey: scan %s: %w", path, err)
	}
	return nil
}

func (s *Scanner) validate() error {
	for _, p := range s.Prefixes {
		if !validPrefix(p) {
			return fmt.Errorf("%w: scanner prefix %q must be %d to %d lowercase letters or digits",
				ErrInvalidFormat, p, minPrefixLen, maxPrefixLen)
		}
	}
	return nil
}

func (s *Scanner) newBuffer() []byte {
	n := s.bufSize
	if n == 0 {
		n = defaultBufSize
	}
	return make([]byte, max(n, minBufSize))
}

func (s *Scanner) tooLarge(size int64) bool {
	limit := s.MaxFileSize
	if limit == 0 {
		limit = DefaultMaxFileSize
	}
	return limit > 0 && size > limit
}

func (s *Scanner) skip(path string, reason error) {
	if s.Skipped != nil {
		s.Skipped(path, reason)
	}
}

// Scanning works on a buffer: read as much as fits, look for markers, keep
// the tail that may hold the start of a key, read on.
const (
	markerLen = 1 + envLen + 1      // "_live_"
	window    = markerLen + bodyLen // bytes from a marker to the end of its key
	// minBufSize leaves room for new data after the carried-over tail
	// (window + maxPrefixLen bytes).
	minBufSize = 2 * maxKeyLen
)

// hit is a key found in the current buffer: where it starts and how long
// its prefix is.
type hit struct{ start, prefixLen int }

// scan reads r through buf and calls fn for each key found, with Path unset.
func (s *Scanner) scan(r io.Reader, buf []byte, fn func(Finding) error) error {
	var (
		n       int   // bytes of buf holding data
		from    int   // look for markers at positions >= from
		base    int64 // offset in the stream of buf[0]
		line    = 1   // line number at offset counted
		lineAt  int64 // offset of the first byte of that line
		counted int64 // newlines have been counted up to this offset
		hits    []hit
	)
	// advance counts lines up to offset to (within buf).
	advance := func(to int64) {
		if to <= counted {
			return
		}
		seg := buf[counted-base : to-base]
		if c := bytes.Count(seg, []byte{'\n'}); c > 0 {
			line += c
			lineAt = counted + int64(bytes.LastIndexByte(seg, '\n')) + 1
		}
		counted = to
	}
	for {
		m, err := io.ReadFull(r, buf[n:])
		n += m
		eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !eof {
			return err
		}
		data := buf[:n]
		// Markers before limit have their whole key in data; later ones
		// wait for the next read, unless there is none.
		limit := n - window + 1
		if eof {
			limit = n
		}
		hits = s.find(data, from, limit, hits[:0])
		for _, h := range hits {
			off := base + int64(h.start)
			advance(off)
			key := data[h.start : h.start+h.prefixLen+window]
			f := Finding{
				Line:   line,
				Column: int(off-lineAt) + 1,
				Offset: off,
				Prefix: string(key[:h.prefixLen]),
				Env:    string(key[h.prefixLen+1 : h.prefixLen+1+envLen]),
				ID:     string(key[h.prefixLen+markerLen : h.prefixLen+markerLen+IDLen]),
			}
			f.Masked = mask(f.Prefix, f.Env, f.ID, string(key[len(key)-4:]))
			if s.Hasher != nil {
				f.Hash = s.Hasher.Hash(string(key))
			}
			if err := fn(f); err != nil {
				return err
			}
		}
		if eof {
			return nil
		}
		// Keep the bytes a later marker's prefix may start in, and the
		// markers not yet checked.
		keep := max(limit-maxPrefixLen, 0)
		advance(base + int64(keep))
		n = copy(buf, data[keep:])
		base += int64(keep)
		from = limit - keep
	}
}

// find appends to hits the keys whose marker starts in data[from:limit],
// sorted by position. It looks for underscores with bytes.IndexByte (SIMD
// in the standard library) and checks for an environment after each.
func (s *Scanner) find(data []byte, from, limit int, hits []hit) []hit {
	for i := from; i < limit; i++ {
		j := bytes.IndexByte(data[i:limit], '_')
		if j < 0 {
			break
		}
		i += j
		if i+markerLen <= len(data) && data[i+markerLen-1] == '_' && isEnv(data[i+1:i+markerLen-1]) {
			hits = s.check(data, i, hits)
		}
	}
	if len(hits) > 1 {
		slices.SortFunc(hits, func(a, b hit) int { return cmp.Compare(a.start, b.start) })
		hits = slices.Compact(hits) // Prefixes may list a prefix twice
	}
	return hits
}

func isEnv(b []byte) bool {
	return string(b) == EnvLive || string(b) == EnvTest
}

// check appends the keys that have their marker at data[at].
func (s *Scanner) check(data []byte, at int, hits []hit) []hit {
	end := at + window
	if end > len(data) || !isBase62(data[at+markerLen:end]) {
		return hits
	}
	if len(s.Prefixes) > 0 {
		for _, p := range s.Prefixes {
			start := at - len(p)
			if start >= 0 && string(data[start:at]) == p && validChecksum(data[start:end]) {
				hits = append(hits, hit{start, len(p)})
			}
		}
		return hits
	}
	// Any prefix: try every run of prefix characters ending at the marker,
	// longest first.
	first := at
	for first > 0 && at-first < maxPrefixLen && isPrefixChar(data[first-1]) {
		first--
	}
	for start := first; start <= at-minPrefixLen; start++ {
		if validChecksum(data[start:end]) {
			hits = append(hits, hit{start, at - start})
		}
	}
	return hits
}
