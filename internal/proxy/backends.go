package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash/fnv"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/topology"
)

// login is who a client is on the servers: its role, database, startup
// parameters and password. Server connections run as the client's role,
// pooled per login.
type login struct {
	user, database string
	params         map[string]string // startup parameters for the servers
	password       string            // "" when the servers let the role in without one
}

// key identifies a login's pools: its password only by a hash.
func (l *login) key() string {
	var b strings.Builder
	b.WriteString(l.user)
	b.WriteByte(0)
	b.WriteString(l.database)
	for _, k := range slices.Sorted(maps.Keys(l.params)) {
		b.WriteByte(0)
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(l.params[k])
	}
	sum := sha256.Sum256([]byte(l.password))
	b.WriteByte(0)
	b.WriteString(hex.EncodeToString(sum[:8]))
	return b.String()
}

// pools are the proxy's server connections: for each login, a pgxpool per
// node. The proxy relays protocol messages on a pooled connection's
// pgconn.PgConn; pgx's own layers on it stay idle.
type pools struct {
	base    []*pgxpool.Config // per node: where and how to connect (from the configured connection strings)
	size    int32
	idle    time.Duration
	mu      sync.Mutex
	byLogin map[string]*loginPools
	closed  bool
}

// loginPools are one login's server connections, a pool per node, and
// what the servers told the proxy about that login's statements.
type loginPools struct {
	nodes []*pgxpool.Pool
	// parsed holds the keys (statementKey) of statements a server of this
	// login accepted in a Parse. A client's Parse of one of them, alone in
	// its round trip, is answered by the proxy: a synchronous prepare
	// (libpq's PQprepare, as pgbench -M prepared sends it) then never
	// waits for a server connection that the client's own other
	// connections may hold.
	parsed sync.Map
	// nparsed bounds parsed.
	nparsed atomic.Int32
}

// maxParsed bounds the statements a login remembers as parsed; past it,
// the memory starts again.
const maxParsed = 10_000

// markParsed records that a server accepted statement key k.
func (lp *loginPools) markParsed(k string) {
	if lp.wasParsed(k) {
		return
	}
	if _, loaded := lp.parsed.LoadOrStore(k, struct{}{}); !loaded && lp.nparsed.Add(1) > maxParsed {
		lp.parsed.Clear()
		lp.nparsed.Store(0)
	}
}

// wasParsed reports whether a server accepted statement key k.
func (lp *loginPools) wasParsed(k string) bool {
	_, ok := lp.parsed.Load(k)
	return ok
}

// forLogin returns the login's pool for every node, making them (lazily
// connecting) the first time.
func (ps *pools) forLogin(l *login) (*loginPools, error) {
	k := l.key()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return nil, errProxyClosed
	}
	if lp, ok := ps.byLogin[k]; ok {
		return lp, nil
	}
	pools := make([]*pgxpool.Pool, len(ps.base))
	for i, base := range ps.base {
		cfg := base.Copy()
		cfg.ConnConfig.User, cfg.ConnConfig.Password, cfg.ConnConfig.Database = l.user, l.password, l.database
		cfg.ConnConfig.RuntimeParams = maps.Clone(l.params)
		cfg.MaxConns = ps.size
		cfg.MinConns = 0
		cfg.MaxConnIdleTime = ps.idle
		cfg.HealthCheckPeriod = time.Minute
		// A connection goes back to the pool only idle and clean; the
		// proxy rolls back and discards what it must first, and pgxpool's
		// Release closes a connection left in a transaction (TxStatus not
		// 'I') by itself. (An AfterRelease hook, which would say the same,
		// costs a goroutine per release.)
		cfg.AfterRelease = nil
		// The proxy's round trips wait for the server's answer before
		// reading it (serverConn).
		if next := cfg.ConnConfig.AfterNetConnect; next != nil {
			cfg.ConnConfig.AfterNetConnect = func(ctx context.Context, c *pgconn.Config, conn net.Conn) (net.Conn, error) {
				conn, err := next(ctx, c, conn)
				if err != nil {
					return nil, err
				}
				return wrapServerConn(ctx, c, conn)
			}
		} else {
			cfg.ConnConfig.AfterNetConnect = wrapServerConn
		}
		// What the proxy passes on unchanged it takes from the server's
		// bytes, without decoding it (serverReader).
		cfg.ConnConfig.BuildFrontend = buildServerFrontend
		p, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			for _, q := range pools[:i] {
				q.Close()
			}
			return nil, err
		}
		pools[i] = p
	}
	if ps.byLogin == nil {
		ps.byLogin = map[string]*loginPools{}
	}
	lp := &loginPools{nodes: pools}
	ps.byLogin[k] = lp
	return lp, nil
}

// reset drops node n's idle connections in every pool.
func (ps *pools) reset(n *topology.Node) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, lp := range ps.byLogin {
		lp.nodes[n.Index].Reset()
	}
}

func (ps *pools) close() {
	ps.mu.Lock()
	all := ps.byLogin
	ps.byLogin, ps.closed = nil, true
	ps.mu.Unlock()
	for _, lp := range all {
		for _, q := range lp.nodes {
			q.Close()
		}
	}
}

// backend is a server connection taken from a pool for a client's round
// trip or transaction.
type backend struct {
	pooled *pgxpool.Conn
	conn   *pgconn.PgConn
	node   *topology.Node
	state  *backendState
}

// backendState is what the proxy knows of a server connection, kept with
// it across clients: the statements it has prepared.
type backendState struct {
	prepared map[string]string // server statement name -> its SQL and parameter types
	order    []string          // oldest first, for eviction
}

// maxPrepared bounds the statements the proxy keeps prepared on one server
// connection; the oldest is closed to make room.
const maxPrepared = 1000

const stateKey = "switchyard.proxy"

// init makes b pooled connection c to node n.
func (b *backend) init(c *pgxpool.Conn, n *topology.Node) {
	pc := c.Conn().PgConn()
	st, _ := pc.CustomData()[stateKey].(*backendState)
	if st == nil {
		st = &backendState{prepared: map[string]string{}}
		pc.CustomData()[stateKey] = st
	}
	*b = backend{pooled: c, conn: pc, node: n, state: st}
}

// receive reads the server's next message. It sets up no context: a hung
// server is interrupted by a deadline on the connection, and the proxy's
// shutdown closes it.
func (b *backend) receive() (pgproto3.BackendMessage, error) {
	return b.conn.ReceiveMessage(context.Background())
}

func (b *backend) fe() *pgproto3.Frontend { return b.conn.Frontend() }

// release gives the connection back to its pool: clean, or (broken, or
// left in a transaction) to be closed.
func (b *backend) release() {
	if b.pooled != nil {
		b.pooled.Release()
		b.pooled = nil
	}
}

// destroy closes the connection instead of pooling it.
func (b *backend) destroy() {
	if b.pooled != nil {
		b.conn.Close(context.Background())
		b.pooled.Release()
		b.pooled = nil
	}
}

// forgetPrepared records that the server's prepared statements are gone
// (DISCARD ALL, DEALLOCATE ALL).
func (b *backend) forgetPrepared() {
	clear(b.state.prepared)
	b.state.order = b.state.order[:0]
}

// serverName is the name under which the proxy prepares a client's
// statement on servers: the same for every client that prepares the same
// text with the same parameter types, so that a server connection serves
// them all.
func serverName(key string) string {
	h := fnv.New64a()
	h.Write([]byte(key))
	return "sy_" + strconv.FormatUint(h.Sum64(), 36)
}

// statementKey is what makes two prepared statements the same.
func statementKey(sql string, oids []uint32) string {
	if len(oids) == 0 {
		return sql
	}
	var b strings.Builder
	b.WriteString(sql)
	for _, o := range oids {
		b.WriteByte(0)
		b.WriteString(strconv.FormatUint(uint64(o), 10))
	}
	return b.String()
}
