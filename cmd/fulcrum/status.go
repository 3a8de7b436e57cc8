package main

import (
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
	Servers []struct {
		Service       string  `json:"service"`
		Host          string  `json:"host"`
		Port          int     `json:"port"`
		Weight        int     `json:"weight"`
		ConnCount     int64   `json:"conn_count"`
		TotalConns    uint64  `json:"total_conns"`
		LastHeartbeat float64 `json:"last_heartbeat"`
		State         string  `json:"state"`
	} `json:"servers"`
	Total     int     `json:"total"`
	Timestamp float64 `json:"timestamp"`
	Services  []struct {
		Name string `json:"name"`
	} `json:"services"` // those listed; a balancer from before services sends none
}

// printStatus writes the aligned table, with a SERVICE column when more than one service is
// listed. Heartbeat ages are taken against the reply's own timestamp, so a clock difference
// between here and the balancer does not skew them.
func printStatus(w io.Writer, st statusReply) error {
	several := len(st.Services) > 1
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "BACKEND\tSTATE\tWEIGHT\tACTIVE\tTOTAL\tHEARTBEAT AGE"
	if several {
		header = "SERVICE\t" + header
	}
	fmt.Fprintln(tw, header)
	var active int64
	for _, s := range st.Servers {
		age := "-"
		if s.State != "static" {
			age = secondsAge(st.Timestamp - s.LastHeartbeat)
		}
		if several {
			fmt.Fprintf(tw, "%s\t", s.Service)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n",
			net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), s.State, s.Weight, s.ConnCount, s.TotalConns, age)
		active += s.ConnCount
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s%s, %s\n", statusScope(st), plural(len(st.Servers), "backend"), plural(int(active), "active connection"))
	return err
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
