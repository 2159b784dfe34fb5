package embedded

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The store on PostgreSQL (StartMongoPostgreSQL) looks at PostgreSQL's
// catalog every pgCatalogInterval for two things.
//
// The _id lookup index. FerretDB 1.24's PostgreSQL backend keeps each
// collection in a table with one jsonb column, _jsonb, and creates the
// unique _id index on (_jsonb->'_id') with a B-tree. It pushes a filter on
// _id down to SQL as `_jsonb->$1 @> $2` (the key a parameter, containment
// the operator), which a B-tree cannot serve: every find, findAndModify,
// update or delete by _id read the whole table (2.2 to 3.7 ms per lookup at
// 5,000 documents of 0.6 KB, growing with the table; only the replace by _id
// that follows a find uses `=` and the B-tree). A GIN index on the same
// expression serves `@>` (0.6 to 1.0 ms). The store adds one to every
// collection of its databases, beside FerretDB's own (FerretDB does not list
// it, and drops it with the table).
// The key being a parameter, only a plan made for the statement's values can
// use the index: PostgreSQL switches a prepared statement to a generic plan
// after five runs if that looks no dearer, which it does while a collection
// is small, and keeps it as the collection grows (lookups were as slow as
// without the index), so FerretDB's connections are set to
// plan_cache_mode=force_custom_plan (postgresURL).
//
// FerretDB's catalog cache. FerretDB loads the list of databases,
// collections and indexes from PostgreSQL on its first command and then
// only changes it for its own commands. Another process's FerretDB on the
// same database (another gateway) that creates a collection leaves this
// one's cache behind: its reads of that collection find nothing, and its
// writes fail (it tries to create the collection again: "relation ...
// already exists"). For the shared databases, the store compares FerretDB's
// view (listCollections and listIndexes over the wire) with
// FerretDB's metadata tables in PostgreSQL whenever the catalog of their
// schemas changed, and replaces FerretDB with a new instance when they
// differ (and PostgreSQL's metadata did not change during the comparison,
// as it does when this process creates or drops a collection): the new one
// loads the catalog afresh. The store's front (frontend.go) then cuts the
// connections to the old one, and clients reconnect to the new one.

// pgIDIndexSuffix ends the added index's name; FerretDB's index names end
// with "_idx", so the two never meet.
const pgIDIndexSuffix = "__gateway_id_lookup"

// pgCatalogInterval is how often the catalog is looked at.
const pgCatalogInterval = 500 * time.Millisecond

// pgMetadataTable is FerretDB's table of a database's collections, in the
// database's schema.
const pgMetadataTable = "_ferretdb_database_metadata"

// pgIDIndexName is the added index's name for a table: the table's name
// (cut, and given a hash of the whole, if the result would exceed
// PostgreSQL's 63 bytes) and pgIDIndexSuffix.
func pgIDIndexName(table string) string {
	const max = 63
	if len(table)+len(pgIDIndexSuffix) <= max {
		return table + pgIDIndexSuffix
	}
	h := fnv.New32a()
	h.Write([]byte(table))
	tag := fmt.Sprintf("_%08x", h.Sum32())
	return table[:max-len(pgIDIndexSuffix)-len(tag)] + tag + pgIDIndexSuffix
}

// pgCatalog indexes the collections of the shared databases (of every
// database if none is named) and watches FerretDB's cache of the shared
// ones.
type pgCatalog struct {
	pool   *pgxpool.Pool // to PostgreSQL
	uri    string        // of this store's FerretDB
	client *mongo.Client // to it
	logger *slog.Logger
	shared []string // database names
	// reload restarts FerretDB; the channel closes when the new one listens.
	reload     func() <-chan struct{}
	restarting <-chan struct{}

	mu      sync.Mutex // one pass at a time: run's and IndexIDs'
	lastErr string     // the last error logged, not logged again until another one
	sig     string     // catalog of the shared schemas when last compared
}

// run looks at the catalog until ctx ends.
func (x *pgCatalog) run(ctx context.Context) {
	t := time.NewTicker(pgCatalogInterval)
	defer t.Stop()
	for {
		err := x.pass(ctx)
		switch {
		case err != nil && ctx.Err() == nil && err.Error() != x.lastErr:
			x.logger.Warn("embedded mongodb: looking at the PostgreSQL catalog failed", "err", err)
			x.lastErr = err.Error()
		case err == nil && x.lastErr != "":
			x.logger.Info("embedded mongodb: looking at the PostgreSQL catalog works again")
			x.lastErr = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pgPassTimeout bounds one look at the catalog (PostgreSQL may hang).
const pgPassTimeout = 30 * time.Second

// indexAll adds the _id lookup index where it is missing.
func (x *pgCatalog) indexAll(ctx context.Context) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, pgPassTimeout)
	defer cancel()
	tables, err := x.tables(ctx)
	if err != nil {
		return err
	}
	return x.index(ctx, tables)
}

// pass indexes, and reloads FerretDB's cache if it is out of date.
func (x *pgCatalog) pass(ctx context.Context) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, pgPassTimeout)
	defer cancel()
	tables, err := x.tables(ctx)
	if err != nil {
		return err
	}
	err = x.index(ctx, tables)
	if len(x.shared) > 0 {
		err = errors.Join(err, x.watch(ctx, tables))
	}
	return err
}

// pgTable is a collection's table and the names of its indexes.
type pgTable struct {
	schema, name string
	indexes      []string
}

// pgCollectionTables lists the tables of FerretDB's collections (the tables
// with a jsonb column _jsonb in schemas with FerretDB's metadata table), in
// the schemas $1 (all if NULL), with the names of their indexes. About 5 ms
// with 100 schemas and 2,000 relations in the database, all of them looked
// at.
const pgCollectionTables = `
SELECT n.nspname, c.relname, coalesce(array_agg(ic.relname::text ORDER BY ic.relname) FILTER (WHERE ic.relname IS NOT NULL), '{}')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indrelid = c.oid
LEFT JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE c.relkind = 'r' AND c.relname <> '` + pgMetadataTable + `'
  AND ($1::text[] IS NULL OR n.nspname = ANY($1))
  AND EXISTS (SELECT 1 FROM pg_class m WHERE m.relnamespace = c.relnamespace AND m.relname = '` + pgMetadataTable + `' AND m.relkind = 'r')
  AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = '_jsonb' AND a.atttypid = 'jsonb'::regtype AND NOT a.attisdropped)
GROUP BY n.nspname, c.relname
ORDER BY n.nspname, c.relname`

func (x *pgCatalog) tables(ctx context.Context) ([]pgTable, error) {
	var schemas []string // nil: every schema
	if len(x.shared) > 0 {
		schemas = x.shared
	}
	rows, err := x.pool.Query(ctx, pgCollectionTables, schemas)
	if err != nil {
		return nil, err
	}
	var out []pgTable
	for rows.Next() {
		var t pgTable
		if err := rows.Scan(&t.schema, &t.name, &t.indexes); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, t)
	}
	rows.Close()
	return out, rows.Err()
}

// index adds the _id lookup index to the tables that lack it. It returns
// the first error and goes on with the other tables.
func (x *pgCatalog) index(ctx context.Context, tables []pgTable) error {
	var first error
	for _, t := range tables {
		name := pgIDIndexName(t.name)
		if slices.Contains(t.indexes, name) {
			continue
		}
		// Not CONCURRENTLY: a failed concurrent build leaves an invalid index
		// behind, which IF NOT EXISTS would then keep. On a new collection the
		// build is instant; on a large existing one, its writes wait for it.
		stmt := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s USING gin ((_jsonb->'_id') jsonb_path_ops)`,
			pgx.Identifier{name}.Sanitize(), pgx.Identifier{t.schema, t.name}.Sanitize())
		if _, err := x.pool.Exec(ctx, stmt); err != nil && !pgIgnorable(err) && first == nil {
			first = fmt.Errorf("_id lookup index on %s.%s: %w", t.schema, t.name, err)
		}
	}
	return first
}

// pgIgnorable: the table or schema was dropped meanwhile, or another process
// created the same index at the same moment.
func pgIgnorable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "42P01", "3F000", "42P07", "23505": // undefined table, undefined schema, duplicate table, unique violation
		return true
	}
	return false
}

// connect opens the client to this store's FerretDB.
func (x *pgCatalog) connect() error {
	c, err := mongo.Connect(options.Client().ApplyURI(x.uri).SetAppName("order-gateway-catalog").
		SetServerSelectionTimeout(5 * time.Second).SetMaxPoolSize(2))
	if err != nil {
		return err
	}
	x.client = c
	return nil
}

func (x *pgCatalog) disconnect() { _ = x.client.Disconnect(context.Background()) }

// watch compares FerretDB's cache of the shared databases with PostgreSQL
// when their schemas' catalog changed (or the last comparison differed),
// and asks for a reload the second time in a row they differ.
func (x *pgCatalog) watch(ctx context.Context, tables []pgTable) error {
	var b strings.Builder
	for _, t := range tables {
		fmt.Fprintf(&b, "%s.%s:%s;", t.schema, t.name, strings.Join(t.indexes, ","))
	}
	sig := b.String()
	if x.restarting != nil {
		select {
		case <-x.restarting:
		default:
			return nil // not yet
		}
		x.restarting = nil
	}
	if sig == x.sig {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var stale []string
	settled := true
	for _, db := range x.shared {
		// PostgreSQL before and after FerretDB: a change this process made
		// in between is in FerretDB's cache and in one of the two.
		before, err := x.inPostgreSQL(ctx, db)
		if err != nil {
			return fmt.Errorf("metadata of %s: %w", db, err)
		}
		cached, err := x.inFerretDB(ctx, db)
		if err != nil {
			return fmt.Errorf("FerretDB's catalog of %s: %w", db, err)
		}
		after, err := x.inPostgreSQL(ctx, db)
		if err != nil {
			return fmt.Errorf("metadata of %s: %w", db, err)
		}
		if !equalCatalogs(before, after) {
			settled = false // changing now: look again next pass
			continue
		}
		if !equalCatalogs(before, cached) {
			stale = append(stale, db)
		}
	}
	x.sig = sig
	if !settled {
		x.sig = ""
	}
	if len(stale) > 0 {
		x.logger.Warn("embedded mongodb: another process created or dropped collections or indexes on PostgreSQL; restarting the store to reload its catalog",
			"databases", stale)
		x.sig = "" // compare again after the restart
		x.restarting = x.reload()
	}
	return nil
}

// catalog maps a database's collections to their index names.
type catalog map[string][]string

func equalCatalogs(a, b catalog) bool {
	if len(a) != len(b) {
		return false
	}
	for c, ia := range a {
		ib, ok := b[c]
		if !ok || !slices.Equal(ia, ib) {
			return false
		}
	}
	return true
}

// inPostgreSQL reads a database's collections and indexes from FerretDB's
// metadata table.
func (x *pgCatalog) inPostgreSQL(ctx context.Context, db string) (catalog, error) {
	q := fmt.Sprintf(`SELECT _jsonb->>'_id', jsonb_path_query_array(_jsonb, '$.indexes[*].name') FROM %s`,
		pgx.Identifier{db, pgMetadataTable}.Sanitize())
	rows, err := x.pool.Query(ctx, q)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000") {
			return catalog{}, nil // no such database
		}
		return nil, err
	}
	out := catalog{}
	for rows.Next() {
		var name string
		var indexes []string
		if err := rows.Scan(&name, &indexes); err != nil {
			rows.Close()
			return nil, err
		}
		slices.Sort(indexes)
		out[name] = indexes
	}
	rows.Close()
	return out, rows.Err()
}

// inFerretDB asks this store's FerretDB for a database's collections and
// indexes, which it answers from its cache.
func (x *pgCatalog) inFerretDB(ctx context.Context, db string) (catalog, error) {
	// Not listDatabases: FerretDB answers it with the size of every
	// database, from PostgreSQL. A database FerretDB does not know has no
	// collections.
	out := catalog{}
	colls, err := x.client.Database(db).ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, err
	}
	for _, c := range colls {
		specs, err := x.client.Database(db).Collection(c).Indexes().ListSpecifications(ctx)
		if err != nil {
			return nil, err
		}
		indexes := []string{}
		for _, s := range specs {
			indexes = append(indexes, s.Name)
		}
		slices.Sort(indexes)
		out[c] = indexes
	}
	return out, nil
}
