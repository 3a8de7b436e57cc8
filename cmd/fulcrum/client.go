package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fulcrumlb/fulcrum/pool"
)

// The admin client: the subcommands that talk to a running balancer's admin API (status, add,
// remove, drain, undrain, heartbeat). They share --admin, --token and --service, read from
// FULCRUM_ADMIN_URL, FULCRUM_ADMIN_TOKEN and FULCRUM_SERVICE, and turn an API error
// ({"error": "..."}) into a non-zero exit.

// defaultAdminURL is where serve's default --admin listens.
const defaultAdminURL = "http://127.0.0.1:9090"

func clientFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "admin", Value: defaultAdminURL, Usage: "the balancer's admin API `URL` (http://host:port, or host:port)", EnvVars: []string{"FULCRUM_ADMIN_URL"}},
		&cli.StringFlag{Name: "token", Usage: "sent as \"Authorization: Bearer `TOKEN`\"", EnvVars: []string{"FULCRUM_ADMIN_TOKEN"}},
		&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, Usage: "timeout of one admin API request", EnvVars: []string{"FULCRUM_ADMIN_TIMEOUT"}},
		&cli.StringFlag{Name: "service", Usage: "the `NAME` of the service to act on or list; empty means the balancer's default service (status: every service)", EnvVars: []string{"FULCRUM_SERVICE"}},
	}
}

// serviceParams are the parameters naming the service --service chose: none when it is empty,
// so that the balancer applies its default. A name the balancer would refuse is refused here.
func serviceParams(c *cli.Context) (url.Values, error) {
	name := c.String("service")
	if name == "" {
		return url.Values{}, nil
	}
	if _, err := pool.ParseServiceName(name); err != nil {
		return nil, fmt.Errorf("--service: %w", err)
	}
	return url.Values{"service": {name}}, nil
}

// adminClient calls one balancer's admin API.
type adminClient struct {
	base  *url.URL
	token string // "" sends no Authorization header
	http  *http.Client
}

func newAdminClient(c *cli.Context) (*adminClient, error) {
	base, err := parseAdminURL(c.String("admin"))
	if err != nil {
		return nil, err
	}
	return &adminClient{base: base, token: c.String("token"), http: &http.Client{Timeout: c.Duration("timeout")}}, nil
}

// parseAdminURL accepts "http://lb:9090", "https://lb/prefix" or a bare "lb:9090".
func parseAdminURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("--admin (or FULCRUM_ADMIN_URL) is empty: want the balancer's admin URL")
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--admin %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--admin %q: want http://host:port", s)
	}
	return u, nil
}

// apiError is a non-2xx answer of the admin API.
type apiError struct {
	URL    string
	Status int
	Msg    string // the "error" field, or the start of a body that had none
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s: %d %s: %s", e.URL, e.Status, http.StatusText(e.Status), e.Msg)
}

// maxReply caps an admin reply; a status listing of 100,000 backends fits.
const maxReply = 64 << 20

// call sends one request to path (GET with params in the query, POST with a form body) and
// returns the body of a 2xx answer; any other answer is an *apiError.
func (a *adminClient) call(ctx context.Context, method, path string, params url.Values) ([]byte, error) {
	req, err := a.request(ctx, method, path, params)
	if err != nil {
		return nil, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return nil, fmt.Errorf("admin API %s: reading the reply: %w", req.URL.Redacted(), err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, &apiError{URL: req.URL.Redacted(), Status: resp.StatusCode, Msg: errorMessage(body)}
	}
	return body, nil
}

func (a *adminClient) request(ctx context.Context, method, path string, params url.Values) (*http.Request, error) {
	u := a.base.JoinPath(path)
	var body io.Reader
	if method == http.MethodGet {
		u.RawQuery = params.Encode()
	} else {
		body = strings.NewReader(params.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("admin API request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	return req, nil
}

// errorMessage is the "error" field of a JSON error body, or the body itself, shortened.
func errorMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		return "(empty reply)"
	}
	return s
}

// change posts a registry change and returns the reply's fields.
func (a *adminClient) change(ctx context.Context, path string, params url.Values) (map[string]any, error) {
	body, err := a.call(ctx, http.MethodPost, path, params)
	if err != nil {
		return nil, err
	}
	var reply map[string]any
	if err := json.Unmarshal(body, &reply); err != nil {
		return nil, fmt.Errorf("admin API %s: reply is not JSON: %w", path, err)
	}
	return reply, nil
}

// changeCommand is add, remove, drain or undrain: one POST to /upstream/<name>.
func changeCommand(name, usage, done string, withWeight bool) *cli.Command {
	flags := append(clientFlags(),
		&cli.StringFlag{Name: "host", Required: true, Usage: "the backend's `HOST` (IP address or DNS name)"},
		&cli.IntFlag{Name: "port", Required: true, Usage: "the backend's `PORT`"})
	if withWeight {
		flags = append(flags, &cli.IntFlag{Name: "weight", Usage: "`WEIGHT` 1..256", DefaultText: "keep the current one, 1 for a new backend"})
	}
	return &cli.Command{
		Name:  name,
		Usage: usage,
		Flags: flags,
		Action: func(c *cli.Context) error {
			ac, err := newAdminClient(c)
			if err != nil {
				return err
			}
			params, err := serviceParams(c)
			if err != nil {
				return err
			}
			params.Set("host", c.String("host"))
			params.Set("port", strconv.Itoa(c.Int("port")))
			if c.IsSet("weight") {
				params.Set("weight", strconv.Itoa(c.Int("weight")))
			}
			reply, err := ac.change(c.Context, "/upstream/"+name, params)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			fmt.Fprintln(c.App.Writer, done, replyServer(reply, params)+inService(params))
			return nil
		},
	}
}

// replyServer is the backend a change reply names ("server", "removed", "draining" or
// "undrained"), or the one asked for.
func replyServer(reply map[string]any, params url.Values) string {
	for _, k := range []string{"server", "removed", "draining", "undrained"} {
		if s, ok := reply[k].(string); ok && s != "" {
			return s
		}
	}
	return net.JoinHostPort(params.Get("host"), params.Get("port"))
}

// inService is " in service NAME" when the request named one, so that the line says where.
func inService(params url.Values) string {
	if name := params.Get("service"); name != "" {
		return " in service " + name
	}
	return ""
}

func clientCommands() []*cli.Command {
	return []*cli.Command{
		statusCommand(),
		changeCommand("add", "register a backend, or heartbeat a known one", "added", true),
		changeCommand("remove", "stop new connections to a backend; it is forgotten once idle", "removed", false),
		changeCommand("drain", "let a backend's connections finish without sending it new ones", "draining", false),
		changeCommand("undrain", "send new connections to a drained backend again", "undrained", false),
		heartbeatCommand(),
	}
}
