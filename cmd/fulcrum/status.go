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
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "list the balancer's backends as a table (or the raw JSON of /upstream/status)",
		Flags: append(clientFlags(), &cli.BoolFlag{Name: "json", Usage: "print the admin API's JSON as it came"}),
		Action: func(c *cli.Context) error {
			ac, err := newAdminClient(c)
			if err != nil {
				return err
			}
			body, err := ac.call(c.Context, http.MethodGet, "/upstream/status", nil)
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
}

// printStatus writes the aligned table. Heartbeat ages are taken against the reply's own
// timestamp, so a clock difference between here and the balancer does not skew them.
func printStatus(w io.Writer, st statusReply) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tSTATE\tWEIGHT\tACTIVE\tTOTAL\tHEARTBEAT AGE")
	var active int64
	for _, s := range st.Servers {
		age := "-"
		if s.State != "static" {
			age = secondsAge(st.Timestamp - s.LastHeartbeat)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n",
			net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), s.State, s.Weight, s.ConnCount, s.TotalConns, age)
		active += s.ConnCount
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s, %s\n", plural(len(st.Servers), "backend"), plural(int(active), "active connection"))
	return err
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
