package pool

import "log/slog"

// quiet is the discard logger of every test in this package.
var quiet = slog.New(slog.DiscardHandler)
