package main

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/fulcrumlb/fulcrum/listener"
	"github.com/fulcrumlb/fulcrum/listener/clientlimit"
	"github.com/fulcrumlb/fulcrum/listener/sniroute"
	"github.com/fulcrumlb/fulcrum/pool"
)

// Several services in one balancer. The top-level flags define the service named "default";
// --service NAME=ADDR adds one that listens on ADDR with the top-level options, and the config
// file's services: list adds services with options of their own. Services are configured
// here and nowhere else: a heartbeat can join a service, never create one.

// serviceConfig is one balanced service: its name, where it listens, and its own pool and
// traffic options.
type serviceConfig struct {
	name     string
	listen   []string
	policy   pool.Policy
	backends []pool.Address // static
	traffic  trafficConfig
	sni      []sniroute.Pattern // server names routed here on a shared address (sni.go); none: the default
}

// trafficConfig is what each service may set for itself; what it does not set it takes from
// the top-level flags.
type trafficConfig struct {
	connectTimeout time.Duration
	retries        int
	maxPerConn     int
	queueTimeout   time.Duration
	idleTimeout    time.Duration
	slowStart      time.Duration
	healthInterval time.Duration
	healthFall     int
	healthRise     int
	proxy          listener.ProxyProtocol
	clients        clientlimit.Config // per-client bounds (clients.go)
}

func (tc trafficConfig) check() error {
	rc := resilienceConfig{healthInterval: tc.healthInterval, healthFall: tc.healthFall, healthRise: tc.healthRise,
		slowStart: tc.slowStart, maxPerConn: tc.maxPerConn, queueTimeout: tc.queueTimeout, idleTimeout: tc.idleTimeout}
	switch {
	case tc.connectTimeout <= 0:
		return errors.New("--connect-timeout must be positive")
	case tc.retries < 0:
		return errors.New("--retries must not be negative")
	case tc.proxy.HeaderTimeout <= 0:
		return errors.New("--proxy-header-timeout must be positive")
	}
	return rc.check()
}

// serviceFlags are the flags that add services.
func serviceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "service", Usage: "add a service `NAME=ADDR` listening on ADDR with the top-level options (repeatable; a name given twice listens on both); --backend NAME=HOST:PORT adds its static backends", EnvVars: env("SERVICE")},
	}
}

// defaultService is the service the top-level flags define.
func defaultService(cfg *config) serviceConfig {
	rc := cfg.resilience
	return serviceConfig{
		name:   pool.DefaultService,
		listen: []string{cfg.listen},
		policy: cfg.policy,
		traffic: trafficConfig{
			connectTimeout: cfg.connectTimeout, retries: cfg.retries,
			maxPerConn: rc.maxPerConn, queueTimeout: rc.queueTimeout, idleTimeout: rc.idleTimeout,
			slowStart: rc.slowStart, healthInterval: rc.healthInterval, healthFall: rc.healthFall,
			healthRise: rc.healthRise, proxy: cfg.operating.proxy,
			clients: cfg.clients,
		},
	}
}

// parseServices builds every service: default from the top-level flags, then the config
// file's services: list, then --service flags; then it gives each --backend to its service.
func parseServices(c *cli.Context, cfg *config) ([]serviceConfig, error) {
	services := []serviceConfig{defaultService(cfg)}
	if path := c.String(configFlag); path != "" {
		fromFile, err := readServicesFile(path, services[0])
		if err != nil {
			return nil, err
		}
		services = append(services, fromFile...)
	}
	var err error
	for _, v := range c.StringSlice("service") {
		if services, err = addServiceFlag(services, v); err != nil {
			return nil, err
		}
	}
	for _, v := range c.StringSlice("backend") {
		if err := addBackendFlag(services, v); err != nil {
			return nil, err
		}
	}
	for _, v := range c.StringSlice("sni") {
		if err := addSNIFlag(services, v); err != nil { // sni.go
			return nil, err
		}
	}
	return services, nil
}

// addServiceFlag applies one --service NAME=ADDR.
func addServiceFlag(services []serviceConfig, v string) ([]serviceConfig, error) {
	name, addr, ok := strings.Cut(v, "=")
	if !ok || addr == "" {
		return nil, fmt.Errorf("--service %q: want NAME=ADDR", v)
	}
	if _, err := pool.ParseServiceName(name); err != nil {
		return nil, fmt.Errorf("--service: %w", err)
	}
	if name == pool.DefaultService {
		return nil, fmt.Errorf("--service %q: the default service listens on --listen", v)
	}
	i := slices.IndexFunc(services, func(s serviceConfig) bool { return s.name == name })
	if i < 0 {
		s := services[0] // the top-level options
		s.name, s.listen, s.backends = name, nil, nil
		services = append(services, s)
		i = len(services) - 1
	}
	services[i].listen = append(services[i].listen, addr)
	return services, nil
}

// addBackendFlag applies one --backend [NAME=]HOST:PORT.
func addBackendFlag(services []serviceConfig, v string) error {
	name, hostPort, named := strings.Cut(v, "=")
	if !named {
		name, hostPort = pool.DefaultService, v
	}
	a, err := pool.ParseAddress(hostPort)
	if err != nil {
		return fmt.Errorf("--backend %q: %w", v, err)
	}
	i := slices.IndexFunc(services, func(s serviceConfig) bool { return s.name == name })
	if i < 0 {
		return fmt.Errorf("--backend %q: no service named %q (define it with --service or in the config file)", v, name)
	}
	if slices.ContainsFunc(services[i].backends, func(b pool.Address) bool { return b.Key() == a.Key() }) {
		return fmt.Errorf("--backend %q: given twice (service %s has one backend per address)", v, name)
	}
	services[i].backends = append(services[i].backends, a)
	return nil
}

// serviceSpec is one item of the config file's services: list. A nil option is not set: the
// service takes the top-level value.
type serviceSpec struct {
	Name                string         `yaml:"name"`
	Listen              stringList     `yaml:"listen"`
	Balance             string         `yaml:"balance"`
	Backends            stringList     `yaml:"backends"`
	ConnectTimeout      *time.Duration `yaml:"connect-timeout"`
	Retries             *int           `yaml:"retries"`
	MaxConnsPerBackend  *int           `yaml:"max-conns-per-backend"`
	QueueTimeout        *time.Duration `yaml:"queue-timeout"`
	IdleTimeout         *time.Duration `yaml:"idle-timeout"`
	SlowStart           *time.Duration `yaml:"slow-start"`
	HealthInterval      *time.Duration `yaml:"health-interval"`
	HealthFall          *int           `yaml:"health-fall"`
	HealthRise          *int           `yaml:"health-rise"`
	SNI                 stringList     `yaml:"sni"`
	MaxConnsPerClient   *int           `yaml:"max-conns-per-client"`
	ClientRate          *string        `yaml:"client-rate"`
	AllowClient         stringList     `yaml:"allow-client"`
	DenyClient          stringList     `yaml:"deny-client"`
	ProxyProtocol       *string        `yaml:"proxy-protocol"`
	AcceptProxyProtocol stringList     `yaml:"accept-proxy-protocol"`
	ProxyHeaderTimeout  *time.Duration `yaml:"proxy-header-timeout"`
}

// stringList is a YAML list of strings that may also be written as one scalar.
type stringList []string

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = stringList{n.Value}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*l = list
	return nil
}

// readServicesFile reads the services: list of the config file, if it has one. Unknown keys
// are errors, as everywhere in the file, and name their line.
func readServicesFile(path string, top serviceConfig) ([]serviceConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var doc struct {
		Services yaml.Node `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil || doc.Services.Kind == 0 {
		return nil, nil // not a map (readConfigFile says so), or no services: list
	}
	if doc.Services.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("config file %s: line %d: services: want a list of services, each with name: and listen:", path, doc.Services.Line)
	}
	var out []serviceConfig
	for i, item := range doc.Services.Content {
		spec, err := decodeServiceSpec(item)
		if err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, prefixLine(err, fmt.Sprintf("services[%d]", i)))
		}
		s, err := spec.build(top)
		if err != nil {
			return nil, fmt.Errorf("config file %s: line %d: services[%d]: %w", path, item.Line, i, err)
		}
		if s.name == pool.DefaultService || slices.ContainsFunc(out, func(o serviceConfig) bool { return o.name == s.name }) {
			return nil, fmt.Errorf("config file %s: line %d: services[%d]: service %q defined twice (the default service is the top level)", path, item.Line, i, s.name)
		}
		out = append(out, s)
	}
	return out, nil
}

// lineError is a problem at a line of the config file.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// prefixLine puts where (services[2]) after the line number of a lineError.
func prefixLine(err error, where string) error {
	if le, ok := err.(*lineError); ok {
		return &lineError{le.line, where + ": " + le.msg}
	}
	return fmt.Errorf("%s: %w", where, err)
}

// decodeServiceSpec reads one services: item key by key, so that an unknown key or a value
// of the wrong kind is reported with its line and in the file's own words.
func decodeServiceSpec(item *yaml.Node) (serviceSpec, error) {
	var spec serviceSpec
	if item.Kind != yaml.MappingNode {
		return spec, &lineError{item.Line, "want a map of keys such as name: and listen:"}
	}
	fields := specFields()
	v := reflect.ValueOf(&spec).Elem()
	for j := 0; j+1 < len(item.Content); j += 2 {
		key, val := item.Content[j], item.Content[j+1]
		idx, ok := fields[key.Value]
		if !ok {
			return spec, &lineError{key.Line, fmt.Sprintf("unknown key %q (valid keys: %s)", key.Value, strings.Join(specKeys(), ", "))}
		}
		f := v.Field(idx)
		if err := val.Decode(f.Addr().Interface()); err != nil {
			return spec, &lineError{val.Line, fmt.Sprintf("%s: %s", key.Value, specValueHint(f.Type(), val.Value))}
		}
	}
	return spec, nil
}

// specFields maps each key of a services: item to its field of serviceSpec.
func specFields() map[string]int {
	t := reflect.TypeFor[serviceSpec]()
	out := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		out[t.Field(i).Tag.Get("yaml")] = i
	}
	return out
}

// specKeys are the keys of a services: item, in the order serviceSpec declares them.
func specKeys() []string {
	t := reflect.TypeFor[serviceSpec]()
	keys := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		keys = append(keys, t.Field(i).Tag.Get("yaml"))
	}
	return keys
}

// specValueHint says what a value of a services: key must look like.
func specValueHint(t reflect.Type, value string) string {
	switch t {
	case reflect.TypeFor[*time.Duration]():
		return fmt.Sprintf("invalid value %q: %s", value, durationHint(value))
	case reflect.TypeFor[*int]():
		return fmt.Sprintf("invalid value %q: want a whole number, such as 10", value)
	case reflect.TypeFor[stringList]():
		return "want one value or a list of them"
	}
	return "want a single value"
}

// build turns a services: item into a service, taking what it leaves unset from top.
func (spec serviceSpec) build(top serviceConfig) (serviceConfig, error) {
	s := serviceConfig{policy: top.policy, traffic: top.traffic}
	var err error
	if s.name, err = pool.ParseServiceName(spec.Name); err != nil {
		return s, err
	}
	if len(spec.Listen) == 0 {
		return s, fmt.Errorf("service %s: listen: at least one address", s.name)
	}
	s.listen = spec.Listen
	if spec.Balance != "" {
		if s.policy, err = pool.ParsePolicy(spec.Balance); err != nil {
			return s, fmt.Errorf("service %s: balance: %w", s.name, err)
		}
	}
	for _, b := range spec.Backends {
		a, err := pool.ParseAddress(b)
		if err != nil {
			return s, fmt.Errorf("service %s: backends: %w", s.name, err)
		}
		s.backends = append(s.backends, a)
	}
	if s.sni, err = parseSNIList(spec.SNI); err != nil { // sni.go
		return s, fmt.Errorf("service %s: %w", s.name, err)
	}
	if err := spec.applyTraffic(&s.traffic); err != nil {
		return s, fmt.Errorf("service %s: %w", s.name, err)
	}
	if err := spec.applyClientSpec(&s.traffic.clients); err != nil { // clients.go
		return s, fmt.Errorf("service %s: %w", s.name, err)
	}
	return s, s.traffic.check()
}

func (spec serviceSpec) applyTraffic(tc *trafficConfig) error {
	setIf(&tc.connectTimeout, spec.ConnectTimeout)
	setIf(&tc.retries, spec.Retries)
	setIf(&tc.maxPerConn, spec.MaxConnsPerBackend)
	setIf(&tc.queueTimeout, spec.QueueTimeout)
	setIf(&tc.idleTimeout, spec.IdleTimeout)
	setIf(&tc.slowStart, spec.SlowStart)
	setIf(&tc.healthInterval, spec.HealthInterval)
	setIf(&tc.healthFall, spec.HealthFall)
	setIf(&tc.healthRise, spec.HealthRise)
	setIf(&tc.proxy.HeaderTimeout, spec.ProxyHeaderTimeout)
	if spec.ProxyProtocol != nil {
		v, err := listener.ParseProxyVersion(*spec.ProxyProtocol)
		if err != nil {
			return fmt.Errorf("proxy-protocol: %w", err)
		}
		tc.proxy.Send = v
	}
	if spec.AcceptProxyProtocol != nil {
		tc.proxy.Accept = nil
		for _, s := range spec.AcceptProxyProtocol {
			p, err := parsePrefix(s) // flags_security.go: a bare address is its /32 or /128
			if err != nil {
				return fmt.Errorf("accept-proxy-protocol: %w", err)
			}
			tc.proxy.Accept = append(tc.proxy.Accept, p)
		}
	}
	return nil
}

func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}
