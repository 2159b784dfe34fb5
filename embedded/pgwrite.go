package embedded

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ordergateway/gateway/embedded/sjson"
)

// ErrNoDirectWrites: the store has no direct writer (it is on SQLite), or
// the write could not be made directly; write through FerretDB instead. It
// is an errors.ErrUnsupported, which view.DirectReplacer's contract names.
var ErrNoDirectWrites = fmt.Errorf("embedded mongodb: no direct writes to this store: %w", errors.ErrUnsupported)

// pgWriter writes a batch of guarded replaces straight into FerretDB's
// tables in one SQL statement. FerretDB 1.24 runs each replace of an
// update command as two SELECTs and an UPDATE in a transaction of its own,
// turns the stored JSON into its own document types and back and the new
// document into JSON: per order view written, a fifth of the gateway's CPU
// and most of PostgreSQL's under load, and the projector's one writer busy
// all the time (BENCHMARKS). The statement does the same check and the same
// write, a whole batch at a time.
//
// It depends on FerretDB 1.24's layout in PostgreSQL, which pgcatalog.go
// depends on too: one schema per database, one table per collection named
// in the schema's _ferretdb_database_metadata table, the document in its
// _jsonb column in FerretDB's JSON encoding (package sjson), and FerretDB's
// unique B-tree index on (_jsonb->'_id'). TestDirectReplacesOnPostgreSQL
// reads what it writes back through FerretDB.
type pgWriter struct {
	pool  *pgxpool.Pool
	pgURL string // to redact errors

	tables tableCache
}

// tableCache maps database and collection to the collection's table: at
// most pgWriterTablesMax entries (emptied when full), an entry dropped when
// its table is gone. Safe for concurrent use.
type tableCache struct {
	mu sync.Mutex
	m  map[[2]string]string
}

func (c *tableCache) get(db, coll string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[[2]string{db, coll}]
	return t, ok
}

func (c *tableCache) put(db, coll, table string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= pgWriterTablesMax {
		c.m = map[[2]string]string{}
	}
	c.m[[2]string{db, coll}] = table
}

// forget drops coll's entry, or every entry of db if coll is "".
func (c *tableCache) forget(db, coll string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if k[0] == db && (coll == "" || k[1] == coll) {
			delete(c.m, k)
		}
	}
}

const (
	// pgWriterTablesMax bounds pgWriter.tables: the gateway writes two
	// collections per views generation.
	pgWriterTablesMax = 64
	// pgWriteMaxBytes and pgWriteMaxRows bound one statement; a larger
	// batch is sent in several.
	pgWriteMaxBytes = 4 << 20
	pgWriteMaxRows  = 512
	// pgWriterConns is the pool size of the direct writes and reads,
	// beside FerretDB's: the projector's writes take one or two, and a
	// read by id well under a millisecond.
	pgWriterConns = 8
)

// guardField is what a guard's name may be: it is put in the statement.
var guardField = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)

// ferretDBModule is the FerretDB whose table layout pgWriter writes.
const ferretDBModule, ferretDBLayout = "github.com/FerretDB/FerretDB", "v1.24."

// ferretDBLayoutKnown reports whether this build's FerretDB is the one
// whose table layout and encoding pgWriter writes: another version may
// read rows in that layout differently, so the store then writes through
// FerretDB alone. A test binary lists no modules; it is built from this
// go.mod, whose FerretDB its tests check (TestSJSONMatchesFerretDB).
func ferretDBLayoutKnown() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	if len(info.Deps) == 0 && testing.Testing() {
		return true
	}
	for _, d := range info.Deps {
		if d.Path == ferretDBModule {
			if d.Replace != nil {
				d = d.Replace
			}
			return strings.HasPrefix(d.Version, ferretDBLayout)
		}
	}
	return false
}

// newPGWriter returns the direct writer of the store on pgURL, or nil when
// this build's FerretDB is not the one it knows (ferretDBLayoutKnown).
func newPGWriter(pgURL string) (*pgWriter, error) {
	if !ferretDBLayoutKnown() {
		return nil, nil
	}
	ferretURL, err := postgresURL(pgURL) // asynchronous commits, custom plans: as FerretDB's
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(ferretURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = pgWriterConns
	cfg.ConnConfig.RuntimeParams["application_name"] = "order-gateway"
	// PostgreSQL planned every batch's statement again under FerretDB's
	// custom plans (postgresURL): 15% of its CPU under load. The writer has
	// its statements planned once per connection (plan_cache_mode=
	// force_generic_plan; auto would keep planning, a plan for ten rows
	// costing more than one for a batch of seven), which is safe only if the
	// plan finds each row by the _id index however the table has grown since:
	// one made while it was small would read all of it, hashed, for every
	// batch until the next ANALYZE. The writer's connections run nothing but
	// its statements, so they rule out what reads a table whole, and the
	// UPDATE is a nested loop over the _id index.
	// TestDirectWritePlansStayOnTheIndex grows a table under a kept plan.
	if u, err := url.Parse(pgURL); err == nil && !u.Query().Has("plan_cache_mode") {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
	cfg.ConnConfig.RuntimeParams["enable_seqscan"] = "off"
	cfg.ConnConfig.RuntimeParams["enable_hashjoin"] = "off"
	cfg.ConnConfig.RuntimeParams["enable_mergejoin"] = "off"
	// A view over about 2 KB is compressed when stored; PostgreSQL's
	// default, pglz, was another 15% of its CPU, lz4 (PostgreSQL 14 and
	// later, when built with it, as Debian's and the official images are)
	// costs a fraction. A server without it refuses the setting: the
	// writes then keep the server's default.
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, _ = c.Exec(ctx, "SET default_toast_compression = lz4")
		return nil
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	return &pgWriter{pool: pool, pgURL: pgURL}, nil
}

// ReplaceGuarded replaces, in collection coll of database db, each document
// whose _id is ids[i] and whose field guard is prevs[i] with docs[i] (BSON,
// _id first and equal to ids[i]), and returns how many it replaced; a
// document whose guard is not at its prev is left as it is. The ids must
// differ. The writes commit as FerretDB's do (on PostgreSQL
// asynchronously: Flush makes them durable) and are atomic per statement
// on PostgreSQL (at most 512 documents or 4 MiB), per call on SQLite.
//
// Errors: ErrNoDirectWrites (wrapped) when the store has no direct writer,
// the collection does not exist yet, or a document holds a type the
// encoding does not cover: the caller writes through FerretDB then, which
// also reports the store's own errors the usual way. Other errors (the
// server unreachable, a statement refused) come with no password in them;
// nothing was written by the failed statement.
func (m *Mongo) ReplaceGuarded(ctx context.Context, db, coll, guard string, ids []string, prevs []int64, docs [][]byte) (int64, error) {
	if len(ids) != len(prevs) || len(ids) != len(docs) {
		return 0, fmt.Errorf("embedded mongodb: ReplaceGuarded: %d ids, %d guards, %d documents", len(ids), len(prevs), len(docs))
	}
	if !guardField.MatchString(guard) {
		return 0, fmt.Errorf("%w: guard field %q", ErrNoDirectWrites, guard)
	}
	if m.direct == nil {
		return 0, ErrNoDirectWrites
	}
	return m.direct.replaceGuarded(ctx, db, coll, guard, ids, prevs, docs)
}

// DirectWrites reports whether the store writes views straight into its
// tables (ReplaceGuarded, InsertNew): with the FerretDB whose layout the
// writers know, on PostgreSQL (pgwrite.go) or SQLite (sqlitewrite.go).
func (m *Mongo) DirectWrites() bool { return m.direct != nil }

// InsertNew inserts, in collection coll of database db, each of docs
// (BSON, _id first and equal to ids[i]) whose _id is not there yet, and
// returns how many it inserted; a document whose _id is taken is left out.
// The ids must differ. Commits, bounds and errors are ReplaceGuarded's.
func (m *Mongo) InsertNew(ctx context.Context, db, coll string, ids []string, docs [][]byte) (int64, error) {
	if len(ids) != len(docs) {
		return 0, fmt.Errorf("embedded mongodb: InsertNew: %d ids, %d documents", len(ids), len(docs))
	}
	if m.direct == nil {
		return 0, ErrNoDirectWrites
	}
	return m.direct.insertNew(ctx, db, coll, ids, docs)
}

// FindByIDs reads, from collection coll of database db, the documents
// whose _id is one of ids, straight from the store's table on PostgreSQL
// or SQLite (FerretDB's find by _id was over half of the gateway's CPU
// under a load of order(id) queries on PostgreSQL), and returns them by id
// as the BSON FerretDB would return: an id with no document is absent. At
// most 512 ids per statement.
//
// Errors: ErrNoDirectWrites (wrapped) when the store has no direct reads
// (another FerretDB), the collection does not exist yet, an _id is one
// SQLite could spell otherwise as JSON, or a document holds a type the
// decoding does not cover: the caller reads
// through FerretDB then. Other errors (the server unreachable) come with no
// password in them.
func (m *Mongo) FindByIDs(ctx context.Context, db, coll string, ids []string) (map[string][]byte, error) {
	if m.direct == nil {
		return nil, ErrNoDirectWrites
	}
	return m.direct.findByIDs(ctx, db, coll, ids)
}

// directWriter makes Mongo's direct writes on one backend (pgWriter,
// sqliteWriter), its arguments checked.
type directWriter interface {
	findByIDs(ctx context.Context, db, coll string, ids []string) (map[string][]byte, error)
	replaceGuarded(ctx context.Context, db, coll, guard string, ids []string, prevs []int64, docs [][]byte) (int64, error)
	insertNew(ctx context.Context, db, coll string, ids []string, docs [][]byte) (int64, error)
	close()
}

// replaceGuarded: Mongo.ReplaceGuarded on PostgreSQL, one statement per
// chunk.
func (w *pgWriter) replaceGuarded(ctx context.Context, db, coll, guard string, ids []string, prevs []int64, docs [][]byte) (int64, error) {
	encoded, table, err := w.prepare(ctx, db, coll, ids, docs)
	if err != nil {
		return 0, err
	}
	stmt := pgReplaceStatement(db, table, guard)
	return w.inChunks(ctx, db, coll, encoded, func(from, to int) (string, []any) {
		return stmt, []any{ids[from:to], prevs[from:to], encoded[from:to]}
	})
}

// findByIDs: Mongo.FindByIDs on PostgreSQL, one statement per chunk of
// pgWriteMaxRows ids (a nested loop over FerretDB's _id index).
func (w *pgWriter) findByIDs(ctx context.Context, db, coll string, ids []string) (map[string][]byte, error) {
	table, err := w.table(ctx, db, coll)
	if err != nil {
		return nil, err
	}
	stmt := fmt.Sprintf(`SELECT u.id, t._jsonb::text FROM unnest($1::text[]) AS u(id), %s AS t WHERE t._jsonb->'_id' = to_jsonb(u.id)`,
		pgx.Identifier{db, table}.Sanitize())
	out := make(map[string][]byte, len(ids))
	for start := 0; start < len(ids); start += pgWriteMaxRows {
		rows, err := w.pool.Query(ctx, stmt, ids[start:min(start+pgWriteMaxRows, len(ids))])
		if err != nil {
			return nil, w.statementError(db, coll, err)
		}
		for rows.Next() {
			var id string
			var text []byte
			if err := rows.Scan(&id, &text); err != nil {
				rows.Close()
				return nil, w.statementError(db, coll, err)
			}
			doc, err := sjson.Decode(text)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("%w: %w", ErrNoDirectWrites, err)
			}
			out[id] = doc
		}
		if err := rows.Err(); err != nil {
			return nil, w.statementError(db, coll, err)
		}
	}
	return out, nil
}

// pgReplaceStatement is replaceGuarded's statement; its parameters are the
// ids, the guards' values and the documents.
func pgReplaceStatement(db, table, guard string) string {
	return fmt.Sprintf(`UPDATE %s AS t SET _jsonb = v.doc::jsonb
FROM unnest($1::text[], $2::bigint[], $3::text[]) AS v(id, prev, doc)
WHERE t._jsonb->'_id' = to_jsonb(v.id) AND t._jsonb->'%s' = to_jsonb(v.prev)`,
		pgx.Identifier{db, table}.Sanitize(), guard)
}

// insertNew: Mongo.InsertNew on PostgreSQL, one statement per chunk.
func (w *pgWriter) insertNew(ctx context.Context, db, coll string, ids []string, docs [][]byte) (int64, error) {
	encoded, table, err := w.prepare(ctx, db, coll, ids, docs)
	if err != nil {
		return 0, err
	}
	// FerretDB's unique index on (_jsonb->'_id') is the conflict's arbiter.
	stmt := fmt.Sprintf(`INSERT INTO %s (_jsonb) SELECT d::jsonb FROM unnest($1::text[]) AS d ON CONFLICT ((_jsonb->'_id')) DO NOTHING`,
		pgx.Identifier{db, table}.Sanitize())
	return w.inChunks(ctx, db, coll, encoded, func(from, to int) (string, []any) {
		return stmt, []any{encoded[from:to]}
	})
}

// prepare encodes docs (encodeDocs) and finds the collection's table.
func (w *pgWriter) prepare(ctx context.Context, db, coll string, ids []string, docs [][]byte) (encoded []string, table string, err error) {
	if encoded, err = encodeDocs(ids, docs); err != nil {
		return nil, "", err
	}
	if table, err = w.table(ctx, db, coll); err != nil {
		return nil, "", err
	}
	return encoded, table, nil
}

// encodeDocs checks that each of docs has _id ids[i], and that the ids
// differ (an UPDATE ... FROM would apply one of two rows for an id, where
// FerretDB applies the first and finds the second stale), and encodes
// them (sjson.Encode).
func encodeDocs(ids []string, docs [][]byte) ([]string, error) {
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		if _, ok := seen[id]; ok {
			return nil, fmt.Errorf("%w: an id repeated in one batch", ErrNoDirectWrites)
		}
		seen[id] = struct{}{}
	}
	// One buffer holds every encoding (a batch's documents cost a few
	// allocations, not one or more each); the strings are views of it,
	// made once it no longer moves, and it is never written again.
	size := 0
	for i, d := range docs {
		if len(d) > sjson.MaxDocumentBytes { // before the buffer is sized for it
			return nil, fmt.Errorf("%w: document %d is over %d bytes", ErrNoDirectWrites, i, sjson.MaxDocumentBytes)
		}
		size += sjson.EstimateEncodedLen(d)
	}
	buf := make([]byte, 0, size)
	ends := make([]int, len(docs))
	for i, d := range docs {
		raw := bson.Raw(d)
		if id, err := raw.LookupErr("_id"); err != nil || id.Type != bson.TypeString || id.StringValue() != ids[i] {
			return nil, fmt.Errorf("embedded mongodb: direct write: document %d's _id is not %q", i, ids[i])
		}
		var err error
		if buf, err = sjson.AppendEncode(buf, raw); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNoDirectWrites, err)
		}
		ends[i] = len(buf)
	}
	encoded := make([]string, len(docs))
	for i, start := 0, 0; i < len(docs); start, i = ends[i], i+1 {
		encoded[i] = unsafe.String(unsafe.SliceData(buf[start:]), ends[i]-start)
	}
	return encoded, nil
}

// inChunks runs the statement that args gives for each chunk of encoded
// (at most pgWriteMaxRows documents and pgWriteMaxBytes, or one document)
// and returns the rows they affected.
func (w *pgWriter) inChunks(ctx context.Context, db, coll string, encoded []string, args func(from, to int) (string, []any)) (int64, error) {
	var affected int64
	for start := 0; start < len(encoded); {
		end, size := start, 0
		for end < len(encoded) && end-start < pgWriteMaxRows && (end == start || size+len(encoded[end]) <= pgWriteMaxBytes) {
			size += len(encoded[end])
			end++
		}
		stmt, a := args(start, end)
		tag, err := w.pool.Exec(ctx, stmt, a...)
		if err != nil {
			return affected, w.statementError(db, coll, err)
		}
		affected += tag.RowsAffected()
		start = end
	}
	return affected, nil
}

// statementError is the error of a failed statement on coll's table:
// ErrNoDirectWrites (wrapped) if the table or its schema is gone (the
// cached name is dropped), else the error without the password.
func (w *pgWriter) statementError(db, coll string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000") {
		w.tables.forget(db, coll)
		return fmt.Errorf("%w: the collection's table is gone", ErrNoDirectWrites)
	}
	return fmt.Errorf("embedded mongodb on postgresql: direct statement: %s", redactIn(err.Error(), w.pgURL))
}

// table returns the table of collection coll in database db, from
// FerretDB's metadata table.
func (w *pgWriter) table(ctx context.Context, db, coll string) (string, error) {
	if t, ok := w.tables.get(db, coll); ok {
		return t, nil
	}
	q := fmt.Sprintf(`SELECT _jsonb->>'table' FROM %s WHERE _jsonb->'_id' = to_jsonb($1::text)`,
		pgx.Identifier{db, pgMetadataTable}.Sanitize())
	var t string
	err := w.pool.QueryRow(ctx, q, coll).Scan(&t)
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows), errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000"):
		return "", fmt.Errorf("%w: no collection %s.%s yet", ErrNoDirectWrites, db, coll)
	case err != nil:
		return "", fmt.Errorf("embedded mongodb on postgresql: direct replace: %s", redactIn(err.Error(), w.pgURL))
	}
	w.tables.put(db, coll, t)
	return t, nil
}

func (w *pgWriter) close() { w.pool.Close() }
