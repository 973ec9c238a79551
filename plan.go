package mailproxy

import (
	"context"
	"fmt"
	"net"
	"strconv"
)

// socketPlan is one socket a Config needs, with the listen directives it
// serves: its own, and those of specific addresses on the same port that a
// wildcard socket accepts for them (as nginx binds only *:port then).
type socketPlan struct {
	name     string // server and address, for messages
	endpoint Endpoint
	config   ListenConfig
	routes   []routePlan
}

// routePlan sends the connections for one local address to one server.
type routePlan struct {
	local  string // the local IP served through a wildcard; "" for the socket's own
	addr   Endpoint
	server int // index in Config.Servers
	order  int // position among the server's endpoints
	config ListenConfig
}

type planEntry struct {
	server, order int
	name          string
	config        ListenConfig
	endpoint      Endpoint
}

// makePlan resolves every listen directive of cfg and groups the endpoints
// into sockets, keyed so that a reload finds the sockets it can keep.
func makePlan(ctx context.Context, cfg *Config) (map[string]*socketPlan, error) {
	entries, err := planEntries(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := checkDuplicates(entries); err != nil {
		return nil, err
	}
	plan := make(map[string]*socketPlan)
	wildcards := make(map[string]string) // network and port → socket key
	for _, e := range entries {
		if ownSocket(e) && e.endpoint.wildcard() {
			wildcards[familyPort(e.endpoint)] = addSocket(plan, e)
		}
	}
	for _, e := range entries {
		key, shared := wildcards[familyPort(e.endpoint)]
		switch {
		case e.endpoint.wildcard() && ownSocket(e):
			continue
		case ownSocket(e) || !shared:
			addSocket(plan, e)
		default:
			host, _, _ := net.SplitHostPort(e.endpoint.Address)
			plan[key].routes = append(plan[key].routes, route(e, host))
		}
	}
	return plan, nil
}

func planEntries(ctx context.Context, cfg *Config) ([]planEntry, error) {
	var entries []planEntry
	for i, sc := range cfg.Servers {
		if sc.Server == nil {
			return nil, fmt.Errorf("%s: no protocol handler", sc.Name)
		}
		if len(sc.Listen) == 0 {
			return nil, fmt.Errorf("%s: no listen directive", sc.Name)
		}
		for _, lc := range sc.Listen {
			eps, err := lc.Endpoints(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", sc.Name, err)
			}
			for _, ep := range eps {
				entries = append(entries, planEntry{i, len(entries), sc.Name, lc, ep})
			}
		}
	}
	return entries, nil
}

func checkDuplicates(entries []planEntry) error {
	seen := make(map[Endpoint]string)
	for _, e := range entries {
		if e.endpoint.Port() == 0 {
			continue // each port 0 is a port of its own
		}
		if where, dup := seen[e.endpoint]; dup {
			return fmt.Errorf("duplicate listen %s in %s and %s", e.endpoint, where, e.name)
		}
		seen[e.endpoint] = e.name
	}
	return nil
}

// ownSocket reports whether e needs a socket of its own: a unix socket, an
// ephemeral port, a wildcard, or socket options (as nginx decides).
func ownSocket(e planEntry) bool {
	p := e.endpoint.Port()
	return p <= 0 || e.endpoint.wildcard() || e.config.socketOptions()
}

func familyPort(ep Endpoint) string {
	return ep.Network + " " + strconv.Itoa(ep.Port())
}

func addSocket(plan map[string]*socketPlan, e planEntry) string {
	key := e.endpoint.key()
	if e.endpoint.Port() == 0 {
		key += fmt.Sprintf(" #%d.%d", e.server, e.order)
	}
	plan[key] = &socketPlan{
		name:     e.name + ": listen " + e.endpoint.String(),
		endpoint: e.endpoint,
		config:   e.config,
		routes:   []routePlan{route(e, "")},
	}
	return key
}

func route(e planEntry, local string) routePlan {
	return routePlan{local: local, addr: e.endpoint, server: e.server, order: e.order, config: e.config}
}
