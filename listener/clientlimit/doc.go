// Package clientlimit keeps each client address of a service within its bounds: at most
// MaxConns connections open at once (--max-conns-per-client), new connections at most at a
// Rate (--client-rate R[/BURST]), and only from addresses the Allow and Deny lists let in
// (--allow-client, --deny-client; the deny list wins). A client is its IPv4 address, or its
// IPv6 /64 (one host's share of a network).
//
// A data plane asks at accept, before any backend is picked or dialed:
//
//	tk, reason := t.Admit(clientAddr, now)
//	if reason != "" { // "acl", "rate" or "conns": close at once, count
//		// fulcrum_client_refused_total{service=...,reason=reason}
//	}
//	...                // serve the connection, then, once it has ended:
//	t.Release(tk)
//
// On the goroutine plane that is Admit in the accept loop (or the connection's goroutine)
// and a deferred Release; on the event loops Admit where a connection is accepted and Release
// where the loop closes it. Both call it from any thread: the table is sharded by client
// address (xxhash), each shard one mutex, a map and an intrusive least-recently-seen list,
// so a client's count is exact whichever loop accepts its connections and no lock is global.
// Admit and Release are O(1) and allocate nothing once a shard's arena has grown.
//
// The table is bounded: past Capacity clients, the least recently seen client with no open
// connection is forgotten (its rate bucket starts full if it comes back). A client with open
// connections is never forgotten, so its count stays exact; when every client of a shard has
// one open, the shard grows past its share instead, bounded by the open connections
// themselves (which MaxConns and the process's descriptor limit bound). Denied clients never
// take an entry. Top lists the clients with the most open connections, for status.
package clientlimit
