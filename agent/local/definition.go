package local

// Service definitions: decoding and checking a registration (Consul's
// AgentServiceRegistration), and turning it into catalog records and back.

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/peerd/peerd/agent/checks"
	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/decode"
)

// ServiceFromDefinition turns an operator's service definition into the
// catalog's service and its check definitions, applying Consul's defaults (ID
// = Name, check IDs "service:<id>[:n]", weights 1/1).
func ServiceFromDefinition(def *state.ServiceDefinition) (*state.Service, []*state.CheckType, error) {
	if def == nil {
		return nil, nil, errors.New("service definition is empty")
	}
	if def.Name == "" {
		return nil, nil, fieldErr("Name", "missing service name (e.g. \"Name\": \"web\")")
	}
	if err := ValidateServiceName(def.Name); err != nil {
		return nil, nil, fieldErr("Name", "%v", err)
	}
	if def.Port < 0 || def.Port > 65535 {
		return nil, nil, fieldErr("Port", "%d is not between 0 and 65535", def.Port)
	}
	if def.Kind == "connect-proxy" {
		// Consul's rules for a proxy registration.
		if def.Proxy == nil || def.Proxy.DestinationServiceName == "" {
			return nil, nil, fieldErr("Proxy.DestinationServiceName", "required for a connect-proxy: name the service it fronts")
		}
		if def.Port == 0 && def.SocketPath == "" {
			return nil, nil, fieldErr("Port", "a connect-proxy needs a Port (or SocketPath)")
		}
	}
	if err := validateUpstreams(def); err != nil {
		return nil, nil, err
	}
	id := def.ID
	if id == "" {
		id = def.Name
	}
	if strings.ContainsAny(id, "/?#") {
		return nil, nil, fieldErr("ID", "%q must not contain '/', '?' or '#'", id)
	}
	w := state.Weights{Passing: 1, Warning: 1}
	if def.Weights != nil {
		w = *def.Weights
		if w.Passing < 1 {
			return nil, nil, fieldErr("Weights.Passing", "%d must be at least 1", w.Passing)
		}
	}
	if len(def.Meta) > 64 {
		return nil, nil, fieldErr("Meta", "%d keys, at most 64 allowed", len(def.Meta))
	}
	for k, v := range def.Meta {
		if k == "" || len(k) > 128 || len(v) > 512 {
			return nil, nil, fieldErr(fmt.Sprintf("Meta[%q]", k), "keys must be 1-128 characters and values at most 512")
		}
	}
	svc := &state.Service{
		Kind: def.Kind, ID: id, Service: def.Name, Tags: def.Tags, Address: def.Address,
		TaggedAddresses: def.TaggedAddresses, Meta: def.Meta, Port: def.Port, SocketPath: def.SocketPath,
		Weights: w, EnableTagOverride: def.EnableTagOverride, Proxy: def.Proxy, Connect: def.Connect,
		Namespace: def.Namespace, Partition: def.Partition,
	}
	if svc.Tags == nil {
		svc.Tags = []string{}
	}
	if svc.Meta == nil {
		svc.Meta = map[string]string{}
	}
	var defs []*state.CheckType
	if def.Check != nil {
		defs = append(defs, def.Check)
	}
	defs = append(defs, def.Checks...)
	out := make([]*state.CheckType, 0, len(defs))
	for i, cd := range defs {
		cp := *cd
		if cp.CheckID == "" {
			cp.CheckID = "service:" + id
			if len(defs) > 1 {
				cp.CheckID = fmt.Sprintf("service:%s:%d", id, i+1)
			}
		}
		if cp.Name == "" {
			cp.Name = fmt.Sprintf("Service '%s' check", def.Name)
		}
		cp.ServiceID = id
		out = append(out, &cp)
	}
	return svc, out, nil
}

// fieldErr is a validation error naming the field at fault.
// validateUpstreams checks the explicit upstreams of a definition, in
// Proxy.Upstreams and in Consul's Connect.SidecarService.Proxy.Upstreams:
// each names a destination and binds a distinct local port (the
// terminator opens a listener per upstream).
func validateUpstreams(def *state.ServiceDefinition) error {
	type list struct {
		path string
		ups  []state.Upstream
	}
	var lists []list
	if def.Proxy != nil {
		lists = append(lists, list{"Proxy.Upstreams", def.Proxy.Upstreams})
	}
	if sc := def.Connect; sc != nil && sc.SidecarService != nil && sc.SidecarService.Proxy != nil {
		lists = append(lists, list{"Connect.SidecarService.Proxy.Upstreams", sc.SidecarService.Proxy.Upstreams})
	}
	binds := map[string]string{}
	for _, l := range lists {
		for i, u := range l.ups {
			path := fmt.Sprintf("%s[%d]", l.path, i)
			switch u.DestinationType {
			case "", "service", "prepared_query":
			default:
				return fieldErr(path+".DestinationType", "%q: want \"service\" (default) or \"prepared_query\"", u.DestinationType)
			}
			if u.DestinationName == "" {
				return fieldErr(path+".DestinationName", "missing: name the service to call")
			}
			if u.DestinationType != "prepared_query" {
				if err := ValidateServiceName(u.DestinationName); err != nil {
					return fieldErr(path+".DestinationName", "%v", err)
				}
			}
			if u.DestinationPeer != "" {
				if !configentry.ValidPeerName(u.DestinationPeer) {
					return fieldErr(path+".DestinationPeer", "%q: %s", u.DestinationPeer, configentry.PeerNameRule)
				}
				if u.Datacenter != "" {
					return fieldErr(path+".Datacenter", "cannot be combined with DestinationPeer: a peer is its own datacenter")
				}
			}
			if u.LocalBindSocketPath != "" {
				continue
			}
			if u.LocalBindPort < 1 || u.LocalBindPort > 65535 {
				return fieldErr(path+".LocalBindPort", "%d: want a port from 1 to 65535 for the local listener (or LocalBindSocketPath)", u.LocalBindPort)
			}
			addr := u.LocalBindAddress
			if addr == "" {
				addr = "127.0.0.1"
			} else if net.ParseIP(addr) == nil {
				return fieldErr(path+".LocalBindAddress", "%q is not an IP address", addr)
			}
			key := net.JoinHostPort(addr, fmt.Sprint(u.LocalBindPort))
			if prev, dup := binds[key]; dup {
				return fieldErr(path+".LocalBindPort", "%s is already bound by %s: give each upstream its own port", key, prev)
			}
			binds[key] = path
		}
	}
	return nil
}

func fieldErr(field, format string, a ...any) error {
	return &decode.Error{Path: field, Msg: fmt.Sprintf(format, a...)}
}

// CheckDefaults fills in a stand-alone check's ID from its Name and its Name
// from its ID, as Consul does, and refuses a check with neither: what
// AddCheck applies before it validates and runs the check.
func CheckDefaults(def *state.CheckType) error {
	if def.CheckID == "" {
		def.CheckID = def.Name
	}
	if def.CheckID == "" {
		return errors.New("check needs a Name (or ID)")
	}
	if def.Name == "" {
		def.Name = def.CheckID
	}
	return nil
}

// ValidateServiceName applies Consul's rule for names that must work in DNS:
// letters, digits, dashes and underscores; other characters are refused.
func ValidateServiceName(name string) error {
	if len(name) > configentry.MaxServiceNameLength {
		return fmt.Errorf("service name %q is longer than %d characters", name, configentry.MaxServiceNameLength)
	}
	if !configentry.ValidServiceNameChars(name) {
		return fmt.Errorf("service name %q: only letters, digits, '-', '_' and '.' are allowed", name)
	}
	return nil
}

// DefinitionFromService is the inverse of ServiceFromDefinition, without checks.
func DefinitionFromService(svc *state.Service) *state.ServiceDefinition {
	w := svc.Weights
	return &state.ServiceDefinition{
		Kind: svc.Kind, ID: svc.ID, Name: svc.Service, Tags: svc.Tags, Address: svc.Address,
		TaggedAddresses: svc.TaggedAddresses, Meta: svc.Meta, Port: svc.Port, SocketPath: svc.SocketPath,
		EnableTagOverride: svc.EnableTagOverride, Weights: &w, Proxy: svc.Proxy, Connect: svc.Connect,
		Namespace: svc.Namespace, Partition: svc.Partition,
	}
}

// DecodeServiceDefinition strictly decodes a service registration body
// (Consul's AgentServiceRegistration JSON) and checks it the way AddService
// will, so a bad registration is refused before anything changes.
func DecodeServiceDefinition(data []byte) (*state.ServiceDefinition, error) {
	var def state.ServiceDefinition
	if err := decode.JSON(data, &def); err != nil {
		return nil, err
	}
	_, checkDefs, err := ServiceFromDefinition(&def)
	if err != nil {
		return nil, err
	}
	for _, cd := range checkDefs {
		if err := checks.Validate(cd); err != nil {
			return nil, fmt.Errorf("check %q: %w", cd.CheckID, err)
		}
	}
	return &def, nil
}
