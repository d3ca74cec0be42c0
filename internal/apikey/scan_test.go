package apikey

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// hitOf is the part of a Finding the reference scanner predicts.
type hitOf struct {
	Offset       int64
	Line, Column int
	Prefix, Env  string
	ID, Masked   string
}

func hitsOf(fs []Finding) []hitOf {
	var out []hitOf
	for _, f := range fs {
		out = append(out, hitOf{f.Offset, f.Line, f.Column, f.Prefix, f.Env, f.ID, f.Masked})
	}
	return out
}

// referenceScan finds keys the slow, obvious way: try every start offset
// and every prefix length, and ask LooksLikeKey.
func referenceScan(data []byte, prefixes []string) []hitOf {
	var out []hitOf
	for i := range data {
		for n := minPrefixLen; n <= maxPrefixLen; n++ {
			end := i + n + window
			if end > len(data) {
				break
			}
			s := string(data[i:end])
			if !LooksLikeKey(s) || len(prefixes) > 0 && !slices.Contains(prefixes, s[:n]) {
				continue
			}
			lineStart := bytes.LastIndexByte(data[:i], '\n') + 1
			k := newKey(s, n, envLen)
			out = append(out, hitOf{
				Offset: int64(i),
				Line:   bytes.Count(data[:i], []byte{'\n'}) + 1,
				Column: i - lineStart + 1,
				Prefix: k.Prefix, Env: k.Env, ID: k.ID, Masked: k.Masked(),
			})
		}
	}
	return out
}

func scanAll(t testing.TB, s *Scanner, r io.Reader) []Finding {
	t.Helper()
	var got []Finding
	err := s.ScanReader(r, "input", func(f Finding) error {
		if f.Path != "input" {
			t.Errorf("Finding.Path = %q, want %q", f.Path, "input")
		}
		got = append(got, f)
		return nil
	})
	if err != nil {
		t.Fatalf("ScanReader: %v", err)
	}
	return got
}

func TestScanReader(t *testing.T) {
	gk := newTestKey(t, Format{}, "gk").Plaintext()
	gk2 := newTestKey(t, Format{}, "gk2").Plaintext()
	test := newTestKey(t, Format{Env: EnvTest}, "test").Plaintext()
	acme := newTestKey(t, Format{Prefix: "acme"}, "acme").Plaintext()
	bad := replaceAt(gk, 30, otherChar(gk[30]))
	tests := []struct {
		name     string
		prefixes []string
		text     string
		want     []string // keys expected, in order
	}{
		{"key alone", nil, gk, []string{gk}},
		{"no key", nil, "nothing to see here_live_ or _test_ either\n", nil},
		{"in JSON", nil, `{"api_key": "` + gk + `"}`, []string{gk}},
		{"env file", nil, "A=1\nGATEHOUSE_KEY=" + test + "\nB=2\n", []string{test}},
		{"after lowercase letters", nil, "xyz" + gk, []string{gk}},
		{"followed by letters", nil, gk + "abc", []string{gk}},
		{"two on a line", nil, gk + "," + gk2, []string{gk, gk2}},
		{"bad checksum", nil, "k=" + bad, nil},
		{"truncated", nil, gk[:len(gk)-1], nil},
		{"split by a newline", nil, gk[:30] + "\n" + gk[30:], nil},
		{"other prefix, any", nil, acme + "\n" + gk, []string{acme, gk}},
		{"other prefix, filtered", []string{"gk"}, acme + "\n" + gk, []string{gk}},
		{"several prefixes", []string{"acme", "gk", "gk"}, acme + "\n" + gk, []string{acme, gk}},
		{"binary", nil, "\x00\xff\x00" + gk + "\x00\x01", []string{gk}},
		{"CRLF", nil, "a\r\nb\r\n  " + gk + "\r\n", []string{gk}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Scanner{Prefixes: tt.prefixes}
			got := scanAll(t, s, strings.NewReader(tt.text))
			var gotIDs, wantIDs []string
			for _, f := range got {
				gotIDs = append(gotIDs, f.ID)
			}
			for _, k := range tt.want {
				p, _, _ := strings.Cut(k, "_")
				wantIDs = append(wantIDs, newKey(k, len(p), envLen).ID)
			}
			if !slices.Equal(gotIDs, wantIDs) {
				t.Fatalf("found IDs %q, want %q", gotIDs, wantIDs)
			}
			if want := referenceScan([]byte(tt.text), tt.prefixes); !slices.Equal(hitsOf(got), want) {
				t.Errorf("findings %+v, want %+v", hitsOf(got), want)
			}
			if tt.prefixes == nil {
				if keys := FindIn(tt.text); !slices.Equal(keys, tt.want) {
					t.Errorf("FindIn found %d keys, want %d: %q", len(keys), len(tt.want), keys)
				}
			}
			for _, f := range got {
				if strings.Contains(fmt.Sprintf("%+v", f), gk[20:40]) {
					t.Errorf("finding %+v contains the secret", f)
				}
			}
		})
	}
}

// randomText returns n bytes of text with newlines, underscores, marker
// look-alikes and base62 runs, and keys planted at random places.
func randomText(r *rand.Rand, n int, keys []string) []byte {
	pieces := []string{"\n", " ", "_", "_live_", "_test_", "gk", "abc", "ABC012xyz", "\r\n", "\x00", "is_live_now", "{\"k\":\""}
	var b []byte
	for len(b) < n {
		switch x := r.IntN(20); {
		case x == 0 && len(keys) > 0:
			b = append(b, keys[r.IntN(len(keys))]...)
		case x < 4:
			for range r.IntN(60) {
				b = append(b, alphabet[r.IntN(62)])
			}
		default:
			b = append(b, pieces[r.IntN(len(pieces))]...)
		}
	}
	return b
}

// TestScanReaderChunks compares the scanner with the reference on random
// text, with buffers small enough that keys cross every possible boundary,
// and with readers that return short reads.
func TestScanReaderChunks(t *testing.T) {
	keys := []string{
		newTestKey(t, Format{}, "1").Plaintext(),
		newTestKey(t, Format{Env: EnvTest}, "2").Plaintext(),
		newTestKey(t, Format{Prefix: "abcdefgh"}, "3").Plaintext(),
		newTestKey(t, Format{Prefix: "ab"}, "4").Plaintext(),
	}
	r := rand.New(rand.NewPCG(5, 6))
	readers := map[string]func(io.Reader) io.Reader{
		"plain":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
	}
	for _, bufSize := range []int{minBufSize, minBufSize + 1, 150, 1000, 0} {
		for name, wrap := range readers {
			t.Run(fmt.Sprintf("buf %d %s", bufSize, name), func(t *testing.T) {
				found := 0
				for i := range 30 {
					data := randomText(r, 200+i*100, keys)
					for _, prefixes := range [][]string{nil, {"gk"}, {"ab", "abcdefgh"}} {
						s := &Scanner{Prefixes: prefixes, bufSize: bufSize}
						got := hitsOf(scanAll(t, s, wrap(bytes.NewReader(data))))
						want := referenceScan(data, prefixes)
						if !slices.Equal(got, want) {
							t.Fatalf("text %d, prefixes %q:\n got %+v\nwant %+v", i, prefixes, got, want)
						}
						found += len(got)
					}
				}
				if found == 0 {
					t.Fatal("no keys found at all; the test text is not exercising the scanner")
				}
			})
		}
	}
}

// TestScanReaderEveryOffset plants a key at every offset around the first
// buffer boundaries.
func TestScanReaderEveryOffset(t *testing.T) {
	key := newTestKey(t, Format{}, "offset").Plaintext()
	for _, bufSize := range []int{minBufSize, 200} {
		for at := range 3 * bufSize {
			data := bytes.Repeat([]byte("ab\n"), (at+len(key))/3+bufSize)
			copy(data[at:], key)
			s := &Scanner{bufSize: bufSize}
			got := hitsOf(scanAll(t, s, bytes.NewReader(data)))
			want := referenceScan(data, nil)
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Fatalf("buf %d, key at %d:\n got %+v\nwant %+v", bufSize, at, got, want)
			}
		}
	}
}

func TestScanReaderErrors(t *testing.T) {
	key := newTestKey(t, Format{}, "err").Plaintext()
	t.Run("callback error stops the scan", func(t *testing.T) {
		stop := errors.New("stop")
		calls := 0
		err := (&Scanner{}).ScanReader(strings.NewReader(key+"\n"+key), "p", func(Finding) error {
			calls++
			return stop
		})
		if !errors.Is(err, stop) || calls != 1 {
			t.Errorf("got error %v after %d calls, want %v after 1", err, calls, stop)
		}
	})
	t.Run("read error", func(t *testing.T) {
		readErr := errors.New("disk on fire")
		r := io.MultiReader(strings.NewReader(key), iotest.ErrReader(readErr))
		err := (&Scanner{}).ScanReader(r, "p", func(Finding) error { return nil })
		if !errors.Is(err, readErr) {
			t.Errorf("got error %v, want %v", err, readErr)
		}
	})
	t.Run("invalid prefix", func(t *testing.T) {
		err := (&Scanner{Prefixes: []string{"GK"}}).ScanReader(strings.NewReader(key), "p", func(Finding) error { return nil })
		if !errors.Is(err, ErrInvalidFormat) {
			t.Errorf("got error %v, want ErrInvalidFormat", err)
		}
	})
}

type treeFinding struct {
	Path string
	Line int
	ID   string
}

func TestScanTree(t *testing.T) {
	root := t.TempDir()
	k1 := newTestKey(t, Format{}, "t1")
	k2 := newTestKey(t, Format{Env: EnvTest}, "t2")
	k3 := newTestKey(t, Format{}, "t3")
	write := func(name string, data string) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.txt", "hello\nkey="+k1.Plaintext()+"\n")
	write("sub/deep/b.go", "package b\n\n// "+k2.Plaintext()+"\n")
	write("app.bin", "\x7fELF\x00\x00"+k3.Plaintext()+"\x00")
	write(".git/config", k1.Plaintext())                       // skipped: git internals
	write("big.log", k1.Plaintext()+strings.Repeat("x", 1000)) // skipped: too large
	write("clean.txt", "nothing here\n")
	if err := os.Symlink(filepath.Join(root, "a.txt"), filepath.Join(root, "link.txt")); err != nil {
		t.Fatal(err)
	}

	var skipped []string
	s := &Scanner{MaxFileSize: 500, Skipped: func(path string, reason error) {
		rel, _ := filepath.Rel(root, path)
		skipped = append(skipped, rel+": "+reason.Error())
	}}
	var got []treeFinding
	err := s.ScanTree(context.Background(), root, func(f Finding) error {
		rel, _ := filepath.Rel(root, f.Path)
		got = append(got, treeFinding{rel, f.Line, f.ID})
		return nil
	})
	if err != nil {
		t.Fatalf("ScanTree: %v", err)
	}
	want := []treeFinding{
		{"a.txt", 2, k1.ID},
		{"app.bin", 1, k3.ID},
		{filepath.Join("sub", "deep", "b.go"), 3, k2.ID},
	}
	if !slices.Equal(got, want) {
		t.Errorf("findings %v, want %v", got, want)
	}
	wantSkipped := []string{"big.log: " + ErrFileTooLarge.Error(), "link.txt: " + ErrNotRegular.Error()}
	if !slices.Equal(skipped, wantSkipped) {
		t.Errorf("skipped %q, want %q", skipped, wantSkipped)
	}

	t.Run("hash", func(t *testing.T) {
		h, err := NewHasher(testPepper(4))
		if err != nil {
			t.Fatal(err)
		}
		forged := Format{}.assemble(k1.ID, strings.Repeat("0", SecretLen)) // real ID, valid checksum
		write("forged.txt", forged.Plaintext())
		defer os.Remove(filepath.Join(root, "forged.txt"))
		hashes := map[string][]byte{}
		err = (&Scanner{Hasher: h}).ScanTree(context.Background(), root, func(f Finding) error {
			rel, _ := filepath.Rel(root, f.Path)
			hashes[rel] = f.Hash
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := hashes["a.txt"], h.Hash(k1.Plaintext()); !bytes.Equal(got, want) {
			t.Errorf("Hash of real key = %x, want %x", got, want)
		}
		if got := hashes["forged.txt"]; got == nil || h.Equal(k1.Plaintext(), got) {
			t.Errorf("Hash of forged key = %x, want a hash that differs from the real key's", got)
		}
		if got := scanAll(t, &Scanner{}, strings.NewReader(k1.Plaintext())); got[0].Hash != nil {
			t.Errorf("Hash without a Hasher = %x, want nil", got[0].Hash)
		}
	})
	t.Run("single file root", func(t *testing.T) {
		var ids []string
		err := (&Scanner{}).ScanTree(context.Background(), filepath.Join(root, "a.txt"), func(f Finding) error {
			ids = append(ids, f.ID)
			return nil
		})
		if err != nil || !slices.Equal(ids, []string{k1.ID}) {
			t.Errorf("got %q, %v; want [%q], nil", ids, err, k1.ID)
		}
	})
	t.Run("missing root", func(t *testing.T) {
		err := (&Scanner{}).ScanTree(context.Background(), filepath.Join(root, "nope"), func(Finding) error { return nil })
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("got error %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := (&Scanner{}).ScanTree(ctx, root, func(Finding) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got error %v, want context.Canceled", err)
		}
	})
	t.Run("callback error", func(t *testing.T) {
		stop := errors.New("stop")
		err := (&Scanner{}).ScanTree(context.Background(), root, func(Finding) error { return stop })
		if !errors.Is(err, stop) {
			t.Errorf("got error %v, want %v", err, stop)
		}
	})
	t.Run("unreadable file", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root can read any file")
		}
		write("secret/locked.txt", "x")
		if err := os.Chmod(filepath.Join(root, "secret/locked.txt"), 0); err != nil {
			t.Fatal(err)
		}
		err := (&Scanner{}).ScanTree(context.Background(), root, func(Finding) error { return nil })
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("got error %v, want fs.ErrPermission", err)
		}
	})
}
