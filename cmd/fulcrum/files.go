package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The files serve writes (--state-file, --pid-file, --access-log) are checked at start: a file
// that cannot be written would otherwise turn persistence, upgrades or the log off with one
// ERROR line in a process that goes on without them.

// fileProblems checks every file cfg names for writing, and returns one error per problem.
func fileProblems(cfg *config) []error {
	var errs []error
	for _, f := range []struct{ flag, path string }{
		{"--state-file", cfg.stateFile},
		{"--pid-file", cfg.pidFile},
		{"--access-log", cfg.operating.accessLog},
	} {
		if f.path == "" || (f.flag == "--access-log" && f.path == "-") {
			continue
		}
		if err := checkWritable(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", f.flag, f.path, err))
		}
	}
	return errs
}

// checkWritable reports whether path can be written: an existing file must open for writing
// (it is not changed), a new one needs a directory that exists and takes new files (a file is
// created and removed there, which also catches read-only file systems).
func checkWritable(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return errors.New("is a directory")
	case err == nil:
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("cannot be written: %w", reason(err))
		}
		return f.Close()
	case !errors.Is(err, fs.ErrNotExist):
		return reason(err)
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory %s: %w", dir, reason(err))
	}
	if !di.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	probe, err := os.CreateTemp(dir, ".fulcrum-check-*")
	if err != nil {
		return fmt.Errorf("directory %s is not writable: %w", dir, reason(err))
	}
	probe.Close()
	return os.Remove(probe.Name())
}

// reason is the cause of a file error without the operation and path the caller names itself.
func reason(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, fs.ErrNotExist) {
			return errors.New("does not exist")
		}
		return pe.Err
	}
	return err
}
