package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/pool"
)

// persistFlags are the flags of restarts and upgrades that lose nothing.
func persistFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "state-file", Usage: "save the registry to `PATH` (atomically, before each admin reply that changes it) and load it at start", EnvVars: env("STATE_FILE")},
		&cli.StringFlag{Name: "pid-file", Usage: "write the PID of the serving process to `PATH` (rewritten by each upgrade on SIGHUP)", EnvVars: env("PID_FILE")},
	}
}

// stateVersion is the format of state files and handover snapshots.
const stateVersion = 1

// errNewerState marks a state written by a newer fulcrum: it is not corrupt, and moving it
// aside would lose what that version saved, so the start stops instead.
var errNewerState = errors.New("written by a newer fulcrum")

// stateDoc is a state file or a handover snapshot: the default service's backends under
// "backends" (as before there were services), every other service's under "services".
type stateDoc struct {
	Version  int                      `json:"version"`
	Saved    time.Time                `json:"saved"`
	Backends []pool.Record            `json:"backends"`
	Services map[string][]pool.Record `json:"services,omitempty"`
}

func encodeState(services []*servicePool) ([]byte, error) {
	doc := stateDoc{Version: stateVersion, Saved: time.Now().UTC(), Backends: []pool.Record{}}
	for _, s := range services {
		recs := s.pool.Export()
		if s.cfg.name == pool.DefaultService {
			doc.Backends = recs
			continue
		}
		if doc.Services == nil {
			doc.Services = make(map[string][]pool.Record)
		}
		doc.Services[s.cfg.name] = recs
	}
	b, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	return append(b, '\n'), nil
}

// decodeState returns the records of every service in a state document, by service name,
// once every record of every service is valid: a bad one refuses the whole document, so a
// restore never fills some services and not others.
func decodeState(data []byte) (map[string][]pool.Record, error) {
	var doc stateDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	if doc.Version > stateVersion {
		return nil, fmt.Errorf("%w (format %d; this one reads format %d): run that version, or move the file away to start empty", errNewerState, doc.Version, stateVersion)
	}
	if doc.Version != stateVersion {
		return nil, fmt.Errorf("decode state: version %d, want %d", doc.Version, stateVersion)
	}
	out := map[string][]pool.Record{pool.DefaultService: doc.Backends}
	for name, recs := range doc.Services {
		if _, err := pool.ParseServiceName(name); err != nil || name == pool.DefaultService {
			return nil, fmt.Errorf("decode state: service %q: not a service name", name)
		}
		out[name] = recs
	}
	for name, recs := range out {
		if err := pool.CheckRecords(recs); err != nil {
			return nil, fmt.Errorf("decode state: service %s: %w", name, err)
		}
	}
	return out, nil
}

// stateStore keeps --state-file in step with the pool. Membership, weight and state changes
// are saved synchronously in the pool's OnChange hook, so the admin API replies only once the
// change is on disk; heartbeat-only changes mark the file stale and run saves them at most once
// a second. Concurrent changes share saves: a save covers every change made before it exported.
type stateStore struct {
	path     string
	services []*servicePool
	log      *slog.Logger

	changes atomic.Uint64 // bumped after every change

	mu     sync.Mutex // serialises saves
	saved  uint64     // the value of changes the last save covered
	frozen bool       // a successor owns the file now: save nothing
	failed bool       // the last save failed (logged once per failure streak)
}

func newStateStore(path string, services []*servicePool, log *slog.Logger) *stateStore {
	return &stateStore{path: path, services: services, log: log}
}

// onChange is the pool's OnChange hook.
func (s *stateStore) onChange(kind pool.ChangeKind) {
	n := s.changes.Add(1)
	if kind == pool.ChangeHeartbeat {
		return // run saves it within a second
	}
	s.saveCovering(n)
}

// saveCovering saves unless a save that started after change n has already written it.
func (s *stateStore) saveCovering(n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen || s.saved >= n {
		return
	}
	covered := s.changes.Load() // every change up to here is visible to Export below
	data, err := encodeState(s.services)
	if err == nil {
		err = writeFileAtomic(s.path, data)
	}
	if err != nil {
		if !s.failed {
			s.log.Error("saving state file failed; will retry on the next change", "path", s.path, "err", err)
		}
		s.failed = true
		return
	}
	if s.failed {
		s.log.Info("state file saved again", "path", s.path)
	}
	s.failed = false
	s.saved = covered
}

// flush saves whatever is not saved yet.
func (s *stateStore) flush() { s.saveCovering(s.changes.Load()) }

// run saves heartbeat-only changes at most once a second until ctx ends, then flushes.
func (s *stateStore) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flush()
			return
		case <-t.C:
			s.flush()
		}
	}
}

// freeze flushes and then stops saving, because a successor process has been handed the
// registry and owns the file from now on. thaw undoes it when the upgrade failed.
func (s *stateStore) freeze() {
	s.flush()
	s.mu.Lock()
	s.frozen = true
	s.mu.Unlock()
}

func (s *stateStore) thaw() {
	s.mu.Lock()
	s.frozen = false
	s.mu.Unlock()
	s.flush()
}

// writeFileAtomic replaces path with data so that a crash leaves either the old or the new
// file: a temporary file in the same directory, fsync, rename, fsync of the directory.
func writeFileAtomic(path string, data []byte) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// loadStateFile restores the registry saved at path and returns how many backends it
// restored. A missing file is a first start. A file that cannot be read, decoded or imported
// is logged as an error and moved aside to PATH.corrupt-<unix time>: the balancer starts
// empty rather than not at all. A file a newer fulcrum wrote is an error: it stops the start.
func loadStateFile(path string, services []*servicePool, log *slog.Logger) (int, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		log.Info("no state file yet; starting empty", "path", path)
		return 0, nil
	}
	var n int
	if err == nil {
		n, err = importState(services, data, log)
	}
	if errors.Is(err, errNewerState) {
		return 0, fmt.Errorf("--state-file %s: %w", path, err)
	}
	if err != nil {
		quarantine(path, err, log)
		return 0, nil
	}
	log.Info("registry restored from state file", "path", path, "backends", n)
	return n, nil
}

func quarantine(path string, cause error, log *slog.Logger) {
	aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
	if err := os.Rename(path, aside); err != nil {
		log.Error("state file unusable and could not be moved aside; starting empty", "path", path, "err", cause, "rename_err", err)
		return
	}
	log.Error("state file unusable; moved aside, starting empty", "path", path, "moved_to", aside, "err", cause)
}

// restoreRegistry fills the fresh pools, before they serve: from the parent process's
// snapshot after an upgrade, otherwise from --state-file. It then returns the store that keeps
// the state file in step (nil without --state-file), already attached to every pool, and
// whether any backend was restored.
func restoreRegistry(cfg *config, services []*servicePool) (*stateStore, bool, error) {
	restored, err := cfg.handover.restore(services)
	if err != nil {
		return nil, false, err
	}
	if !restored && cfg.stateFile != "" {
		n, err := loadStateFile(cfg.stateFile, services, cfg.log)
		if err != nil {
			return nil, false, err
		}
		restored = n > 0
	}
	if cfg.stateFile == "" {
		return nil, restored, nil
	}
	s := newStateStore(cfg.stateFile, services, cfg.log)
	for _, svc := range services {
		svc.pool.OnChange = s.onChange
	}
	s.changes.Add(1)
	s.flush() // the file now says what this process serves
	return s, restored, nil
}

// importState decodes a saved or inherited registry and loads each service's records into
// its pool; it returns how many backends it restored. A service no longer configured loses
// its backends, with a warning that names them.
func importState(services []*servicePool, data []byte, log *slog.Logger) (int, error) {
	byService, err := decodeState(data)
	if err != nil {
		return 0, err
	}
	total := 0
	for name, recs := range byService {
		i := slices.IndexFunc(services, func(s *servicePool) bool { return s.cfg.name == name })
		if i < 0 {
			if len(recs) > 0 {
				log.Warn("state names a service that is not configured; its backends are dropped", "service", name, "backends", len(recs))
			}
			continue
		}
		n, err := services[i].pool.Import(recs)
		if err != nil {
			return total, fmt.Errorf("service %s: %w", name, err)
		}
		total += n
	}
	return total, nil
}
