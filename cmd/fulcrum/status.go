package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/pool"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "list the balancer's backends as a table (or the raw JSON of /upstream/status); --service lists one service's",
		Flags: append(clientFlags(), &cli.BoolFlag{Name: "json", Usage: "print the admin API's JSON as it came"}),
		Action: func(c *cli.Context) error {
			ac, err := newAdminClient(c)
			if err != nil {
				return err
			}
			params, err := serviceParams(c)
			if err != nil {
				return err
			}
			body, err := ac.call(c.Context, http.MethodGet, "/upstream/status", params)
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			if c.Bool("json") {
				_, err := c.App.Writer.Write(body)
				return err
			}
			var st statusReply
			if err := json.Unmarshal(body, &st); err != nil {
				return fmt.Errorf("status: reply is not the status JSON: %w", err)
			}
			return printStatus(c.App.Writer, st)
		},
	}
}

// statusReply is the part of /upstream/status the table shows.
type statusReply struct {
	Servers   []statusServer `json:"servers"`
	Total     int            `json:"total"`
	Timestamp float64        `json:"timestamp"`
	Registry  string         `json:"registry"` // "memory", "etcd"; "" when not sent
	Version   string         `json:"version"`  // the balancer's build; "" from one that does not send it
	Revision  string         `json:"revision"`
	Services  []struct {
		Name string `json:"name"`
	} `json:"services"` // those listed; a balancer from before services sends none
}

// statusServer is one backend of the status reply.
type statusServer struct {
	Service       string  `json:"service"`
	Host          string  `json:"host"`
	Port          int     `json:"port"`
	Weight        int     `json:"weight"`
	ConnCount     int64   `json:"conn_count"`
	TotalConns    uint64  `json:"total_conns"`
	LastHeartbeat float64 `json:"last_heartbeat"`
	State         string  `json:"state"`
	Static        *bool   `json:"static"` // nil from a balancer that does not send it
	LastError     string  `json:"last_error"`
	LastErrorTime float64 `json:"last_error_time"`
}

// printStatus writes the aligned table, with a SERVICE column when more than one service is
// listed and a LAST ERROR column when a backend listed has one. Ages are taken against the
// reply's own timestamp, so a clock difference between here and the balancer does not skew
// them. A static backend has no heartbeat age, nor has any under a shared registry (etcd),
// where a backend lives by its lease, renewed through any balancer.
func printStatus(w io.Writer, st statusReply) error {
	several, errs := len(st.Services) > 1, false
	for _, s := range st.Servers {
		errs = errs || s.LastError != ""
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "BACKEND\tSTATE\tWEIGHT\tACTIVE\tTOTAL\tHEARTBEAT AGE"
	if several {
		header = "SERVICE\t" + header
	}
	if errs {
		header += "\tLAST ERROR"
	}
	fmt.Fprintln(tw, header)
	var active int64
	for _, s := range st.Servers {
		if several {
			fmt.Fprintf(tw, "%s\t", s.Service)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s",
			net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), s.State, s.Weight, s.ConnCount, s.TotalConns, heartbeatAge(st, s))
		if errs {
			fmt.Fprintf(tw, "\t%s", lastError(st.Timestamp, s.LastError, s.LastErrorTime))
		}
		fmt.Fprintln(tw)
		active += s.ConnCount
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s%s, %s\n", statusScope(st), plural(len(st.Servers), "backend"), plural(int(active), "active connection"))
	if err == nil && st.Version != "" {
		_, err = fmt.Fprintf(w, "served by fulcrum %s (revision %s)\n", st.Version, cmp.Or(st.Revision, "unknown"))
	}
	return err
}

// heartbeatAge is a backend's heartbeat age, or "-" where none means anything: a static
// backend, or a shared registry. A balancer that does not send static says so by state.
func heartbeatAge(st statusReply, s statusServer) string {
	static := s.State == "static"
	if s.Static != nil {
		static = *s.Static
	}
	if static || (st.Registry != "" && st.Registry != "memory") {
		return "-"
	}
	return secondsAge(st.Timestamp - s.LastHeartbeat)
}

// lastError is why a backend last failed and how long before now; "-" when it never did.
func lastError(now float64, err string, at float64) string {
	switch {
	case err == "":
		return "-"
	case at == 0:
		return err
	}
	return fmt.Sprintf("%s (%s ago)", err, secondsAge(now-at))
}

// statusScope starts the footer: how many services were listed when several were, the
// service's name when one other than the default was.
func statusScope(st statusReply) string {
	switch {
	case len(st.Services) > 1:
		return plural(len(st.Services), "service") + ", "
	case len(st.Services) == 1 && st.Services[0].Name != pool.DefaultService:
		return "service " + st.Services[0].Name + ": "
	}
	return ""
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func secondsAge(s float64) string {
	d := time.Duration(max(s, 0) * float64(time.Second))
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
