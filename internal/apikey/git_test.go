package apikey

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// gitRepo is a scratch repository for tests.
type gitRepo struct {
	t   *testing.T
	dir string
}

func newGitRepo(t *testing.T) *gitRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	r := &gitRepo{t, t.TempDir()}
	r.git("init", "-q", "-b", "main")
	return r
}

func (r *gitRepo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-C", r.dir}, args...)...)
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *gitRepo) write(name, data string) {
	r.t.Helper()
	p := filepath.Join(r.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *gitRepo) commit(msg string) string {
	r.t.Helper()
	r.git("add", "-A")
	r.git("commit", "-q", "--allow-empty", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

type gitFinding struct {
	Path   string
	Line   int
	ID     string
	Object string
	Commit string
}

func TestScanGitHistory(t *testing.T) {
	r := newGitRepo(t)
	deleted := newTestKey(t, Format{}, "deleted")
	branch := newTestKey(t, Format{Env: EnvTest}, "branch")
	inMessage := newTestKey(t, Format{}, "message")
	inTag := newTestKey(t, Format{Prefix: "acme"}, "tag")
	dangling := newTestKey(t, Format{}, "dangling")
	inBig := newTestKey(t, Format{}, "big")

	r.write("README", "hello\n")
	r.commit("initial")
	r.write("secrets.env", "A=1\nKEY="+deleted.Plaintext()+"\n")
	added := r.commit("add secrets")
	blob := r.git("rev-parse", "HEAD:secrets.env")
	r.git("rm", "-q", "secrets.env")
	removed := r.commit("remove leaked " + inMessage.Plaintext())
	r.write("copy/secrets.env", "A=1\nKEY="+deleted.Plaintext()+"\n") // same blob again
	r.commit("same content elsewhere")
	r.git("tag", "-a", "v1", "-m", "release "+inTag.Plaintext())

	r.git("checkout", "-q", "-b", "feature")
	r.write("config/prod.yaml", "db: x\napi:\n  key: "+branch.Plaintext()+"\n")
	onBranch := r.commit("config")
	branchBlob := r.git("rev-parse", "HEAD:config/prod.yaml")
	r.write("big.txt", inBig.Plaintext()+strings.Repeat("x\n", 200))
	r.commit("big file")
	bigBlob := r.git("rev-parse", "HEAD:big.txt")

	r.git("checkout", "-q", "main")
	r.write("tmp.txt", dangling.Plaintext())
	r.commit("oops")
	r.git("reset", "-q", "--hard", "HEAD~1") // reachable only from the reflog now

	var skipped []string
	s := &Scanner{MaxFileSize: 300, Skipped: func(path string, reason error) {
		if !errors.Is(reason, ErrFileTooLarge) {
			t.Errorf("Skipped(%q, %v), want ErrFileTooLarge", path, reason)
		}
		skipped = append(skipped, path)
	}}
	var got []gitFinding
	err := s.ScanGitHistory(context.Background(), r.dir, func(f Finding) error {
		got = append(got, gitFinding{f.Path, f.Line, f.ID, f.Object, f.Commit})
		return nil
	})
	if err != nil {
		t.Fatalf("ScanGitHistory: %v", err)
	}
	slices.SortFunc(got, func(a, b gitFinding) int { return cmp.Compare(a.ID, b.ID) })
	want := []gitFinding{
		{"copy/secrets.env", 2, deleted.ID, blob, added},
		{"config/prod.yaml", 3, branch.ID, branchBlob, onBranch},
		{"", 6, inMessage.ID, removed, removed},
		{"v1", 6, inTag.ID, r.git("rev-parse", "v1"), ""},
	}
	slices.SortFunc(want, func(a, b gitFinding) int { return cmp.Compare(a.ID, b.ID) })
	if !slices.Equal(got, want) {
		t.Errorf("findings:\n got %v\nwant %v", got, want)
	}
	if want := []string{"big.txt@" + bigBlob}; !slices.Equal(skipped, want) {
		t.Errorf("skipped %q, want %q", skipped, want)
	}

	t.Run("callback error", func(t *testing.T) {
		stop := errors.New("stop")
		err := (&Scanner{}).ScanGitHistory(context.Background(), r.dir, func(Finding) error { return stop })
		if !errors.Is(err, stop) {
			t.Errorf("got error %v, want %v", err, stop)
		}
	})
	t.Run("not a repository", func(t *testing.T) {
		err := (&Scanner{}).ScanGitHistory(context.Background(), t.TempDir(), func(Finding) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "rev-list") {
			t.Errorf("got error %v, want a git rev-list error", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := (&Scanner{}).ScanGitHistory(ctx, r.dir, func(Finding) error { return nil })
		if err == nil {
			t.Error("got nil error from a canceled scan, want one")
		}
	})
}

// TestScanGitHistoryManyObjects makes sure the feeder and the reader do not
// deadlock when there are more objects than fit in the queue between them. git fast-import builds the repository quickly.
func TestScanGitHistoryManyObjects(t *testing.T) {
	r := newGitRepo(t)
	key := newTestKey(t, Format{}, "many")
	const files = 1000
	var stream strings.Builder
	stream.WriteString("commit refs/heads/main\ncommitter t <t@example.com> 0 +0000\ndata 4\nmany\n")
	for i := range files {
		content := fmt.Sprintf("file %d\n%s", i, strings.Repeat("text\n", i%100))
		if i == files/2 {
			content += key.Plaintext() + "\n"
		}
		fmt.Fprintf(&stream, "M 100644 inline d%d/f%d\ndata %d\n%s\n", i%50, i, len(content), content)
	}
	cmd := exec.Command("git", "-C", r.dir, "fast-import", "--quiet")
	cmd.Stdin = strings.NewReader(stream.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git fast-import: %v\n%s", err, out)
	}
	var got []string
	start := time.Now()
	err := (&Scanner{queueLen: 8}).ScanGitHistory(context.Background(), r.dir, func(f Finding) error {
		got = append(got, fmt.Sprintf("%s:%d %s", f.Path, f.Line, f.ID))
		return nil
	})
	t.Logf("scanned %d blobs in %v", files, time.Since(start))
	want := []string{fmt.Sprintf("d%d/f%d:%d %s", files/2%50, files/2, files/2%100+2, key.ID)}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %q, %v; want %q, nil", got, err, want)
	}
}
