package apikey

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var scanBig = flag.Bool("scan.big", false, "run BenchmarkScanTreeBig on a generated 500 MB tree (also GATEHOUSE_BENCH_BIG=1)")

func BenchmarkParse(b *testing.B) {
	live := newTestKey(b, Format{}, "bench").Plaintext()
	inputs := []struct{ name, s string }{
		{"accept", live},
		{"reject/checksum", replaceAt(live, 20, otherChar(live[20]))},
		{"reject/alphabet", replaceAt(live, len(live)-1, '-')},
		{"reject/length", live[:len(live)-1]},
		{"reject/prefix", "xx" + live[2:]},
	}
	for _, in := range inputs {
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Format{}.Parse(in.s)
			}
		})
	}
}

func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := (Format{}).Generate(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHasher(b *testing.B) {
	h, err := NewHasher(testPepper(9))
	if err != nil {
		b.Fatal(err)
	}
	pt := newTestKey(b, Format{}, "hash").Plaintext()
	stored := h.Hash(pt)
	b.Run("Hash", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.Hash(pt)
		}
	})
	b.Run("Equal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !h.Equal(pt, stored) {
				b.Fatal("Equal = false")
			}
		}
	})
}

// corpus returns about n bytes of synthetic text of the given kind, with
// keys planted about once per MiB; it returns the number of keys planted.
func corpus(kind string, n int, seed uint64) ([]byte, int) {
	r := rand.New(rand.NewPCG(seed, 42))
	code := []string{"func", "return", "user_id", "err", "if", "nil", "{", "}", "(", ")", ":=", "=", "\n\t",
		"is_live_stream", "run_test_case", "api_key", "self", "def", "import", "const", "\"", "0x1f", "//", "config.", "\n"}
	prose := []string{"the", "key", "of", "a", "gatehouse", "and", "to", "live", "test", "in", "is", ",", ".", "\n", "rotate"}
	var b bytes.Buffer
	b.Grow(n + 1024)
	keys := 0
	next := 1 << 20
	for b.Len() < n {
		if b.Len() >= next {
			k := newKeyFromRand(r)
			b.WriteString(" " + k + "\n")
			keys++
			next += 1 << 20
		}
		switch kind {
		case "code":
			b.WriteString(code[r.IntN(len(code))])
			b.WriteByte(" \n"[r.IntN(8)/7])
		case "prose":
			b.WriteString(prose[r.IntN(len(prose))])
			b.WriteByte(' ')
		case "binary":
			var w [8]byte
			for i := range w {
				w[i] = byte(r.Uint32())
			}
			b.Write(w[:])
		case "markers": // adversarial: a marker every 64 bytes, body-like text around it
			b.WriteString("abcdefgh_live_")
			for range 50 {
				b.WriteByte(alphabet[r.IntN(62)])
			}
		}
	}
	return b.Bytes(), keys
}

func newKeyFromRand(r *rand.Rand) string {
	seed := make([]byte, 8)
	for i := range seed {
		seed[i] = byte(r.Uint32())
	}
	k, err := Format{}.generate(seededReader(seed))
	if err != nil {
		panic(err)
	}
	return k.Plaintext()
}

// BenchmarkScan measures ScanReader throughput on 16 MiB of text in memory.
func BenchmarkScan(b *testing.B) {
	for _, kind := range []string{"code", "prose", "binary", "markers"} {
		data, planted := corpus(kind, 16<<20, 1)
		for _, mode := range []struct {
			name     string
			prefixes []string
		}{{"any-prefix", nil}, {"prefix-gk", []string{"gk"}}} {
			b.Run(kind+"/"+mode.name, func(b *testing.B) {
				s := &Scanner{Prefixes: mode.prefixes}
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					found := 0
					err := s.ScanReader(bytes.NewReader(data), "bench", func(Finding) error {
						found++
						return nil
					})
					if err != nil || found != planted {
						b.Fatalf("found %d keys (err %v), want %d", found, err, planted)
					}
				}
			})
		}
	}
}

// BenchmarkScanTreeBig generates a 500 MB tree of text files and measures
// ScanTree on it. It runs only with -scan.big or GATEHOUSE_BENCH_BIG=1,
// and needs 500 MB of free space in the temporary directory.
func BenchmarkScanTreeBig(b *testing.B) {
	if !*scanBig && os.Getenv("GATEHOUSE_BENCH_BIG") != "1" {
		b.Skip("set -scan.big or GATEHOUSE_BENCH_BIG=1 to generate and scan a 500 MB tree")
	}
	const (
		total    = 500 << 20
		fileSize = 2 << 20
	)
	root := b.TempDir()
	chunk, _ := corpus("code", 16<<20, 2)
	chunk = bytes.ReplaceAll(chunk, []byte("gk_live_"), []byte("gk_lave_")) // plant keys explicitly below
	var size int64
	planted := 0
	for i := 0; size < total; i++ {
		dir := filepath.Join(root, fmt.Sprintf("pkg%02d", i%25), fmt.Sprintf("sub%d", i%3))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		start := (i * 7919 * 64) % (len(chunk) - fileSize)
		data := bytes.Clone(chunk[start : start+fileSize])
		if i%10 == 0 {
			k := newTestKey(b, Format{}, fmt.Sprint(i)).Plaintext()
			copy(data[fileSize/2:], "\n"+k+"\n")
			planted++
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%04d.go", i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
		size += int64(len(data))
	}
	b.Logf("tree: %d MB in %d files, %d keys", size>>20, size/fileSize, planted)
	s := &Scanner{}
	b.SetBytes(size)
	for b.Loop() {
		found := 0
		err := s.ScanTree(context.Background(), root, func(Finding) error {
			found++
			return nil
		})
		if err != nil || found != planted {
			b.Fatalf("found %d keys (err %v), want %d", found, err, planted)
		}
	}
}

// The corpus must exercise the scanner: check that its kinds contain the
// markers they are meant to.
func TestCorpus(t *testing.T) {
	for _, kind := range []string{"code", "markers"} {
		data, keys := corpus(kind, 3<<20, 1)
		if keys != 2 || !strings.Contains(string(data), "_live_") {
			t.Errorf("%s corpus: %d keys planted, has _live_ = %v; want 2 and true", kind, keys, strings.Contains(string(data), "_live_"))
		}
	}
}
