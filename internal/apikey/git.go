package apikey

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// ScanGitHistory scans every blob reachable from any ref of the git
// repository at repoDir (all branches, tags and stashes, and every commit
// in their history), so that a key committed once and deleted later is
// still found. It scans commit and annotated tag messages too. Objects
// reachable only from reflogs, or not at all, are not scanned. It runs the
// git command (version 2.32 or later):
//
//	git rev-list --all                                       (commits)
//	git rev-list --objects --all --filter=object:type=blob   (blobs and tags, with paths)
//	git cat-file --batch                                     (contents)
//
// Each object is scanned once, however many commits contain it. In a
// Finding, Object is the name of the object holding the key. For a blob,
// Path is one of the paths it had (the one git rev-list reports), and
// Commit the oldest commit that added it (found with git log
// --find-object; empty if only a merge commit added it). For a commit
// message, Path is empty and Commit is the commit; for a tag message, Path
// is the tag's name. Objects larger than MaxFileSize are reported to
// Skipped as "path@object".
func (s *Scanner) ScanGitHistory(ctx context.Context, repoDir string, fn func(Finding) error) error {
	if err := s.validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	commits := newGit(ctx, repoDir, "rev-list", "--all")
	objects := newGit(ctx, repoDir, "rev-list", "--objects", "--all", "--filter=object:type=blob")
	catFile := newGit(ctx, repoDir, "cat-file", "--batch")
	commitsOut, err1 := commits.cmd.StdoutPipe()
	objectsOut, err2 := objects.cmd.StdoutPipe()
	catIn, err3 := catFile.cmd.StdinPipe()
	catOut, err4 := catFile.cmd.StdoutPipe()
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return fmt.Errorf("apikey: git: %w", err)
	}
	procs := []*gitProc{commits, objects, catFile}
	for i, p := range procs {
		if err := p.cmd.Start(); err != nil {
			cancel()
			for _, started := range procs[:i] {
				started.cmd.Wait()
			}
			return fmt.Errorf("apikey: %s: %w", p.name, err)
		}
	}

	// One goroutine feeds object names to cat-file and the matching paths
	// to the reader below, in the same order: first every commit, then the
	// blobs and tags (the second rev-list also lists the commits at the
	// tips of refs, without a path; those are skipped).
	paths := make(chan string, cmp.Or(s.queueLen, 4096))
	var wg sync.WaitGroup
	var feedErr error
	wg.Go(func() {
		defer close(paths)
		defer catIn.Close()
		feedErr = feed(ctx, commitsOut, catIn, paths, false)
		if feedErr == nil {
			feedErr = feed(ctx, objectsOut, catIn, paths, true)
		}
	})
	readErr := s.readObjects(ctx, repoDir, bufio.NewReaderSize(catOut, 64<<10), paths, fn)
	if readErr != nil {
		cancel() // stop git and unblock the feeder
	}
	wg.Wait()
	if feedErr != nil {
		cancel() // git may be blocked writing output nobody reads
	}
	waitErr := errors.Join(commits.wait(), objects.wait(), catFile.wait())
	switch {
	case readErr != nil:
		return readErr
	case waitErr != nil:
		return waitErr
	case feedErr != nil:
		return fmt.Errorf("apikey: git: %w", feedErr)
	}
	return nil
}

// gitProc is a git command and its captured standard error.
type gitProc struct {
	name   string // "git rev-list", for errors
	cmd    *exec.Cmd
	stderr bytes.Buffer
}

func newGit(ctx context.Context, repoDir string, args ...string) *gitProc {
	p := &gitProc{name: "git " + args[0]}
	p.cmd = exec.CommandContext(ctx, "git", append([]string{"-C", repoDir}, args...)...)
	p.cmd.Stderr = &p.stderr
	return p
}

func (p *gitProc) wait() error {
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("apikey: %s: %w: %s", p.name, err, strings.TrimSpace(p.stderr.String()))
	}
	return nil
}

// feed copies the object names from rev-list's lines ("<name>" or
// "<name> <path>") to w, one per line, and sends each path on paths first;
// withPath skips the lines without a path. It flushes w whenever it is
// about to wait, so that cat-file always has every request the reader waits
// for.
func feed(ctx context.Context, rd io.Reader, w io.Writer, paths chan<- string, withPath bool) error {
	r := bufio.NewReaderSize(rd, 64<<10)
	bw := bufio.NewWriter(w)
	for {
		if r.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		line, err := r.ReadString('\n')
		if line == "" && errors.Is(err, io.EOF) {
			return bw.Flush()
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		// "<name>" for a commit, "<name> <path>" for a blob or tag.
		name, path, hasPath := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		if name == "" || withPath && !hasPath {
			continue
		}
		select {
		case paths <- path:
		default:
			if err := bw.Flush(); err != nil {
				return err
			}
			select {
			case paths <- path:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if _, err := bw.WriteString(name + "\n"); err != nil {
			return err
		}
	}
}

// readObjects reads cat-file's answers ("<name> <type> <size>\n<content>\n"
// or "<name> missing\n"), one per path, and scans the objects.
func (s *Scanner) readObjects(ctx context.Context, repoDir string, r *bufio.Reader, paths <-chan string, fn func(Finding) error) error {
	buf := s.newBuffer()
	for path := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		header, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("apikey: git cat-file: %w", err)
		}
		fields := strings.Fields(header)
		if len(fields) != 3 {
			continue // "<name> missing": not in a shallow or partial clone
		}
		name, kind := fields[0], fields[1]
		size, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			return fmt.Errorf("apikey: git cat-file: bad header %q", strings.TrimSpace(header))
		}
		switch {
		case kind != "blob" && kind != "commit" && kind != "tag":
			err = discard(r, size) // a tree, listed despite the filter
		case s.tooLarge(size):
			s.skip(path+"@"+name, ErrFileTooLarge)
			err = discard(r, size)
		default:
			commit, looked := "", kind != "blob"
			if kind == "commit" {
				commit = name
			}
			err = s.scan(io.LimitReader(r, size), buf, func(f Finding) error {
				if !looked {
					commit, looked = addedIn(ctx, repoDir, name), true
				}
				f.Path, f.Object, f.Commit = path, name, commit
				return fn(f)
			})
			if err == nil {
				err = discard(r, 0)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// discard skips n content bytes and the newline after them.
func discard(r *bufio.Reader, n int64) error {
	if _, err := io.CopyN(io.Discard, r, n+1); err != nil {
		return fmt.Errorf("apikey: git cat-file: %w", err)
	}
	return nil
}

// addedIn returns the oldest commit reachable from any ref that added the
// blob, or "" if there is none or git fails.
func addedIn(ctx context.Context, repoDir, blob string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", repoDir, "log", "--all", "--reverse",
		"--format=%H", "--find-object="+blob).Output()
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return first
}
