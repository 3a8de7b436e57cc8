package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/coreos/go-systemd/v22/daemon"
)

// systemd's readiness protocol (Type=notify). The unit in contrib/systemd sets NotifyAccess=all,
// so that the successor of a SIGHUP upgrade, a child of the old main process, may report:
//
//	start:    READY=1                   once serving
//	SIGHUP:   RELOADING=1               from the old process
//	          MAINPID=<new>, READY=1    from the successor once it serves; the old one drains
//	                                    and exits, which systemd no longer counts as the end
//	          READY=1                   from the old process again if the upgrade failed
//	SIGTERM:  STOPPING=1                when the drain starts
//
// Without NOTIFY_SOCKET (not under systemd) every call does nothing.

// notifier sends the messages; its zero value works.
type notifier struct {
	log *slog.Logger // nil: failures are not logged
}

// ready says the process serves; upgraded says it took over from a previous process, which is
// no longer the main one.
func (n notifier) ready(upgraded bool) {
	if upgraded {
		n.send(fmt.Sprintf("MAINPID=%d\n%s", os.Getpid(), daemon.SdNotifyReady))
		return
	}
	n.send(daemon.SdNotifyReady)
}

func (n notifier) reloading() { n.send(daemon.SdNotifyReloading) }
func (n notifier) stopping()  { n.send(daemon.SdNotifyStopping) }

// send keeps NOTIFY_SOCKET in the environment: a successor started by an upgrade inherits it.
func (n notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil && n.log != nil {
		n.log.Warn("cannot notify systemd", "state", state, "err", err)
	}
}
