package admin

import (
	"net/http"
	"time"
)

// NewServer returns an http.Server for the admin API with every timeout and size limit set,
// so that slow or oversized requests cannot hold it.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		// net/http allows 4 KiB beyond MaxHeaderBytes; this makes 16 KiB the real limit.
		MaxHeaderBytes: 16<<10 - 4096,
	}
}
