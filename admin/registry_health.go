package admin

import (
	gometrics "github.com/hashicorp/go-metrics"
)

// SharedRegistry is a registry this balancer shares with others (etcd): /upstream/status and
// /metrics say which kind of registry is in use and whether it answers.
type SharedRegistry interface {
	// Kind names the registry, such as "etcd".
	Kind() string
	// Healthy reports whether the registry answered its last call.
	Healthy() bool
}

// registryState is the registry part of /upstream/status: "memory" (always healthy) when the
// registry is this process's own, or the shared registry's kind and health. The reply carries
// it beside the Overview's fields, or whenever the registry is shared, so that a bare API
// answers with the fields it always had.
type registryState struct {
	Registry        string
	RegistryHealthy bool
}

func (a *API) registryState() registryState {
	if a.Shared == nil {
		return registryState{Registry: "memory", RegistryHealthy: true}
	}
	return registryState{Registry: a.Shared.Kind(), RegistryHealthy: a.Shared.Healthy()}
}

// keyRegistryHealthy is the gauge fulcrum_registry_healthy{registry="memory"|"etcd"}: 1 while
// the registry answers, 0 while it does not.
var keyRegistryHealthy = []string{"registry", "healthy"}

// setRegistry sets the registry gauge; the API calls it before each scrape.
func (m *Metrics) setRegistry(st registryState) {
	v := float64(0)
	if st.RegistryHealthy {
		v = 1
	}
	m.m.SetPrecisionGaugeWithLabels(keyRegistryHealthy, v, []gometrics.Label{{Name: "registry", Value: st.Registry}})
}
