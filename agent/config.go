package agent

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/peerd/peerd/agent/config"
)

// Config is the agent's configuration; its settings (flags, file keys,
// defaults) and their validation live in package config.
type Config = config.Config

// DefaultConfig is config.DefaultConfig: a production client agent.
func DefaultConfig() Config { return config.DefaultConfig() }

// DevConfig is config.DevConfig: one in-memory server on loopback with free
// ports.
func DevConfig() Config { return config.DevConfig() }

// defaultBindAddr picks the host's one private IPv4 address, as Consul does,
// and asks for -bind-addr when there is none or several.
func defaultBindAddr() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("list interface addresses: %w", err)
	}
	var found []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil || !ipn.IP.IsPrivate() {
			continue
		}
		found = append(found, ipn.IP.String())
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", errors.New("no private IPv4 address found: set -bind-addr")
	}
	return "", fmt.Errorf("several private IPv4 addresses found (%s): choose one with -bind-addr", strings.Join(found, ", "))
}
