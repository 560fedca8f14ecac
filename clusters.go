package switchyard

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard/internal/classify"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// Statement is what Config.Route is given to place a statement.
type Statement struct {
	// SQL is the statement's text.
	SQL string
	// Reads and Writes are the tables it reads and writes (or locks), as
	// written in it: "schema.table" where it qualifies them, else "table";
	// each once, in order of first appearance. Views count as tables. The
	// tables that functions it calls touch are not known.
	Reads, Writes []string
	// Write reports that it is not provably a pure read.
	Write bool
}

// OnCluster returns a context whose statements and transactions go to the
// named cluster (one of Config.Clusters), whatever Route and Tables say,
// as Django's using= does. A name the DB does not know is an error when a
// statement runs with it.
func OnCluster(ctx context.Context, name string) context.Context {
	return withOpts(ctx, func(o *ctxOptions) { o.cluster = name })
}

// tableName is a table in Config.Tables: a bare name (any schema) or a
// schema-qualified one.
type tableName struct{ schema, name string }

// parseTableName reads "table" or "schema.table", each part lower-cased
// unless double-quoted, as PostgreSQL folds identifiers.
func parseTableName(s string) (tableName, error) {
	var parts []string
	rest := strings.TrimSpace(s)
	for rest != "" {
		var part string
		if rest[0] == '"' {
			end := strings.Index(rest[1:], `"`)
			if end < 0 {
				return tableName{}, fmt.Errorf("table %q: an unterminated quoted name", s)
			}
			part, rest = rest[1:1+end], rest[2+end:]
		} else {
			end := strings.IndexByte(rest, '.')
			if end < 0 {
				end = len(rest)
			}
			part, rest = strings.ToLower(strings.TrimSpace(rest[:end])), rest[end:]
		}
		if part == "" {
			return tableName{}, fmt.Errorf("table %q: an empty name", s)
		}
		parts = append(parts, part)
		if rest == "" {
			break
		}
		if rest[0] != '.' {
			return tableName{}, fmt.Errorf("table %q: expected a dot after %q", s, part)
		}
		rest = rest[1:]
		if rest == "" {
			return tableName{}, fmt.Errorf("table %q: ends with a dot", s)
		}
	}
	switch len(parts) {
	case 1:
		return tableName{name: parts[0]}, nil
	case 2:
		return tableName{schema: parts[0], name: parts[1]}, nil
	}
	return tableName{}, fmt.Errorf("table %q: want table or schema.table", s)
}

// router places statements on the DB's clusters.
type router struct {
	clusters []*topology.Cluster
	byName   map[string]*topology.Cluster
	fallback *topology.Cluster // DefaultCluster
	tables   map[tableName]*topology.Cluster
	route    func(context.Context, Statement) string
}

// placement is where a statement goes and why: explicit (OnCluster, Route
// or Tables said so) or by default.
type placement struct {
	cluster  *topology.Cluster
	explicit bool
}

// place finds sql's cluster (rule 1 of Config.Clusters). With one
// cluster it costs nothing.
func (db *DB) place(ctx context.Context, sql string) (placement, error) {
	r := &db.router
	if len(r.clusters) == 1 {
		return placement{cluster: r.fallback}, nil
	}
	if o := fromCtx(ctx); o != nil && o.cluster != "" {
		c, err := r.named(o.cluster, "OnCluster")
		return placement{cluster: c, explicit: true}, err
	}
	st := db.engine.Classifier().Analyze(sql)
	if r.route != nil {
		if name := r.route(ctx, statementOf(sql, st)); name != "" {
			c, err := r.named(name, "Route")
			return placement{cluster: c, explicit: true}, err
		}
	}
	return r.byTables(st.Reads, st.Writes)
}

// placeTable finds the cluster of a statement that touches table only
// (CopyFrom).
func (db *DB) placeTable(ctx context.Context, schema, table string) (placement, error) {
	r := &db.router
	if len(r.clusters) == 1 {
		return placement{cluster: r.fallback}, nil
	}
	if o := fromCtx(ctx); o != nil && o.cluster != "" {
		c, err := r.named(o.cluster, "OnCluster")
		return placement{cluster: c, explicit: true}, err
	}
	t := []classify.Table{{Schema: schema, Name: table}}
	if r.route != nil {
		st := Statement{SQL: "COPY " + t[0].String() + " FROM STDIN", Writes: []string{tableString(t[0])}, Write: true}
		if name := r.route(ctx, st); name != "" {
			c, err := r.named(name, "Route")
			return placement{cluster: c, explicit: true}, err
		}
	}
	return r.byTables(nil, t)
}

func (r *router) named(name, by string) (*topology.Cluster, error) {
	if c := r.byName[name]; c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("%w: %s named cluster %q, which is not one of Clusters", ErrConfig, by, name)
}

// byTables places a statement by the tables it touches.
func (r *router) byTables(lists ...[]classify.Table) (placement, error) {
	var found *topology.Cluster
	var first classify.Table
	for _, list := range lists {
		for _, t := range list {
			c := r.tableCluster(t)
			switch {
			case c == nil:
			case found == nil:
				found, first = c, t
			case c != found:
				return placement{}, fmt.Errorf("%w: %s is in cluster %s, %s in cluster %s", ErrCrossCluster, first, found.Name, t, c.Name)
			}
		}
	}
	if found == nil {
		return placement{cluster: r.fallback}, nil
	}
	return placement{cluster: found, explicit: true}, nil
}

// tableCluster is the cluster Tables gives t: by its qualified name, then
// by its bare name; an unqualified t also by the qualified name in the
// public schema, where an unqualified name usually resolves.
func (r *router) tableCluster(t classify.Table) *topology.Cluster {
	if len(r.tables) == 0 {
		return nil
	}
	if t.Schema != "" {
		if c := r.tables[tableName{t.Schema, t.Name}]; c != nil {
			return c
		}
	} else if c := r.tables[tableName{"public", t.Name}]; c != nil {
		return c
	}
	return r.tables[tableName{name: t.Name}]
}

// statementOf makes Route's view of a statement.
func statementOf(sql string, st *classify.Statement) Statement {
	s := Statement{SQL: sql, Write: !st.Kind.ReplicaSafe()}
	for _, t := range st.Reads {
		s.Reads = append(s.Reads, tableString(t))
	}
	for _, t := range st.Writes {
		s.Writes = append(s.Writes, tableString(t))
	}
	return s
}

func tableString(t classify.Table) string {
	if t.Schema == "" {
		return t.Name
	}
	return t.Schema + "." + t.Name
}

// newRouter makes the DB's router once the engine has its clusters.
func newRouter(cfg *Config, clusters []*topology.Cluster) router {
	r := router{clusters: clusters, byName: map[string]*topology.Cluster{}, route: cfg.Route, fallback: clusters[0]}
	for _, c := range clusters {
		r.byName[c.Name] = c
	}
	if c := r.byName[cfg.DefaultCluster]; c != nil {
		r.fallback = c
	}
	if len(cfg.Tables) > 0 {
		r.tables = make(map[tableName]*topology.Cluster, len(cfg.Tables))
		for t, name := range cfg.Tables {
			tn, _ := parseTableName(t) // checked by clusterSpecs
			r.tables[tn] = r.byName[name]
		}
	}
	return r
}

// placeConn is the cluster of a Conn (Acquire): OnCluster's, else the
// default cluster.
func (db *DB) placeConn(ctx context.Context) (*topology.Cluster, error) {
	r := &db.router
	if o := fromCtx(ctx); o != nil && o.cluster != "" && len(r.clusters) > 1 {
		return r.named(o.cluster, "OnCluster")
	}
	return r.fallback, nil
}

// placeBatch finds the one cluster of every statement of b.
func (db *DB) placeBatch(ctx context.Context, b *pgx.Batch) (placement, error) {
	at := placement{cluster: db.router.fallback}
	for i, q := range b.QueuedQueries {
		p, err := db.place(ctx, q.SQL)
		switch {
		case err != nil:
			return placement{}, err
		case !p.explicit:
		case !at.explicit:
			at = p
		case p.cluster != at.cluster:
			return placement{}, fmt.Errorf("%w: statement %d of the batch goes to cluster %s, an earlier one to %s", ErrCrossCluster, i+1, p.cluster.Name, at.cluster.Name)
		}
	}
	return at, nil
}

// tableSchema is the schema of a CopyFrom table name, or "".
func tableSchema(id pgx.Identifier) string {
	if len(id) >= 2 {
		return id[len(id)-2]
	}
	return ""
}
