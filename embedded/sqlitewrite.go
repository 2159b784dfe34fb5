package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ordergateway/gateway/embedded/sjson"
)

// sqliteWriter is pgWriter's counterpart for the store on SQLite: it writes
// the projector's guarded replaces and new views straight into FerretDB's
// tables, a batch in one SQLite transaction, where FerretDB ran each replace
// as a read and a write of its own (on the embedded stack FerretDB and
// SQLite were a third of the gateway's CPU under load). FerretDB 1.24's
// SQLite layout: one file <database>.sqlite per database in the store's
// folder, one STRICT table per collection named in its _ferretdb_collections
// table, the document in its _ferretdb_sjson column in the same JSON
// encoding as on PostgreSQL (package sjson), found by _ferretdb_sjson->'$._id'
// (the expression the store's own _id index serves, idindex.go).
//
// Its one connection per database file waits for FerretDB's writers (and
// they for it) with the same busy timeout, and commits as FerretDB does
// (synchronous(normal), docs/embedded.md "Durability").
type sqliteWriter struct {
	dir string

	mu sync.Mutex
	// dbs are the open database files, at most sqliteWriterFilesMax (all
	// let go when full).
	dbs    map[string]*sqliteFile
	tables tableCache
}

// sqliteFile is an open database file and what it was when opened: a
// database FerretDB drops and creates again is a new file, and the old
// connection would write to the removed one.
//
// A file let go of (replaced, or evicted when sqliteWriterFilesMax are
// open) is closed once the last read or write using it has released it:
// closing it under them would fail them ("sql: database is closed").
type sqliteFile struct {
	db   *sql.DB // the writer's one connection
	ro   *sql.DB // read-only connections for findByIDs, at most sqliteReaders
	path string
	info os.FileInfo

	// users counts the reads and writes between open and release, and
	// retired says the writer has let go of the file; both under the
	// writer's mu.
	users   int
	retired bool
}

func (f *sqliteFile) close() {
	_ = f.db.Close()
	_ = f.ro.Close()
}

// retire lets go of f: it is closed now, or by the release of its last
// user. Called with w.mu held.
func (w *sqliteWriter) retire(name string, f *sqliteFile) {
	delete(w.dbs, name)
	f.retired = true
	if f.users == 0 {
		f.close()
	}
}

// release ends a use of f that open began.
func (w *sqliteWriter) release(f *sqliteFile) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f.users--
	if f.retired && f.users == 0 {
		f.close()
	}
}

// sqliteWriterFilesMax bounds the database files the writer keeps open.
const sqliteWriterFilesMax = 16

// sqliteReaders bounds the read-only connections of one database file:
// readers of a database in WAL mode (FerretDB's) neither wait for its
// writer nor hold it up.
const sqliteReaders = 4

// open returns the connections to database db's file, which must exist
// (and be the file it was opened on), for one read or write: the caller
// releases it (w.release) when done.
func (w *sqliteWriter) open(db string) (*sqliteFile, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if f := w.dbs[db]; f != nil {
		if info, err := os.Stat(f.path); err == nil && os.SameFile(info, f.info) {
			f.users++
			return f, nil
		}
		w.retire(db, f) // dropped, and perhaps created again
		w.tables.forget(db, "")
	}
	if db == "" || strings.ContainsAny(db, `/\`) || strings.HasPrefix(db, ".") {
		return nil, fmt.Errorf("%w: database name %q", ErrNoDirectWrites, db)
	}
	path := filepath.Join(w.dir, db+".sqlite")
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: no database %s yet", ErrNoDirectWrites, db)
	}
	q := url.Values{}
	q.Add("mode", "rw") // never create a file FerretDB has not
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "synchronous(normal)")
	d, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	d.SetMaxOpenConns(1)
	q.Set("mode", "ro")
	q.Del("_pragma")
	q.Add("_pragma", "busy_timeout(10000)")
	ro, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		_ = d.Close()
		return nil, err
	}
	ro.SetMaxOpenConns(sqliteReaders)
	ro.SetMaxIdleConns(sqliteReaders)
	if len(w.dbs) >= sqliteWriterFilesMax {
		for name, old := range w.dbs {
			w.retire(name, old)
		}
	}
	f := &sqliteFile{db: d, ro: ro, path: path, info: info, users: 1}
	w.dbs[db] = f
	return f, nil
}

// table returns the table of collection coll in database db.
func (w *sqliteWriter) table(ctx context.Context, d *sql.DB, db, coll string) (string, error) {
	if t, ok := w.tables.get(db, coll); ok {
		return t, nil
	}
	var t string
	err := d.QueryRowContext(ctx, `SELECT table_name FROM _ferretdb_collections WHERE name = ?`, coll).Scan(&t)
	switch {
	case errors.Is(err, sql.ErrNoRows), err != nil && strings.Contains(err.Error(), "no such table"):
		return "", fmt.Errorf("%w: no collection %s.%s yet", ErrNoDirectWrites, db, coll)
	case err != nil:
		return "", fmt.Errorf("embedded mongodb: collection %s.%s: %w", db, coll, err)
	}
	w.tables.put(db, coll, t)
	return t, nil
}

// write runs stmt once per document in one transaction, with the
// arguments args gives for document i, and returns the rows affected.
func (w *sqliteWriter) write(ctx context.Context, db, coll string, ids []string, docs [][]byte, stmt func(table string) string, args func(i int, doc string) []any) (int64, error) {
	if err := plainIDs(ids); err != nil {
		return 0, err
	}
	encoded, err := encodeDocs(ids, docs)
	if err != nil {
		return 0, err
	}
	f, err := w.open(db)
	if err != nil {
		return 0, err
	}
	defer w.release(f)
	d := f.db
	table, err := w.table(ctx, d, db, coll)
	if err != nil {
		return 0, err
	}
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("embedded mongodb: direct write: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	st, err := tx.PrepareContext(ctx, stmt(table))
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			w.tables.forget(db, coll)
			return 0, fmt.Errorf("%w: the collection's table is gone", ErrNoDirectWrites)
		}
		return 0, fmt.Errorf("embedded mongodb: direct write: %w", err)
	}
	defer st.Close()
	var affected int64
	for i, doc := range encoded {
		res, err := st.ExecContext(ctx, args(i, doc)...)
		if err != nil {
			return 0, fmt.Errorf("embedded mongodb: direct write: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("embedded mongodb: direct write: %w", err)
		}
		affected += n
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("embedded mongodb: direct write: %w", err)
	}
	return affected, nil
}

// replaceGuarded: Mongo.ReplaceGuarded on SQLite, all in one transaction.
//
// The writer exists only with the FerretDB whose layout it knows
// (ferretDBLayoutKnown, checked by StartMongo).
func (w *sqliteWriter) replaceGuarded(ctx context.Context, db, coll, guard string, ids []string, prevs []int64, docs [][]byte) (int64, error) {
	return w.write(ctx, db, coll, ids, docs, func(table string) string {
		// ->> gives the guard as an SQL integer, compared with the
		// argument's; -> gives the _id as JSON, as the _id index has it.
		return fmt.Sprintf(`UPDATE %q SET _ferretdb_sjson = ? WHERE _ferretdb_sjson->'$._id' = ? AND _ferretdb_sjson->>'$.%s' = ?`, table, guard)
	}, func(i int, doc string) []any {
		return []any{doc, string(sjson.AppendString(nil, []byte(ids[i]))), prevs[i]}
	})
}

// plainIDs refuses (ErrNoDirectWrites) an _id that FerretDB's JSON escapes:
// the _id is matched as JSON text, as SQLite keeps it, and FerretDB writes
// strings with encoding/json, which escapes quotes, backslashes, control
// characters and (for HTML) <, > and &: "a&b" is stored as "a\u0026b", and
// the text "a&b" would never match it (a read would find nothing, an insert
// would add a second document with the same _id).
func plainIDs(ids []string) error {
	for _, id := range ids {
		for i := 0; i < len(id); i++ {
			if c := id[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return fmt.Errorf("%w: an _id with character %q", ErrNoDirectWrites, c)
			}
		}
	}
	return nil
}

// findByIDs: Mongo.FindByIDs on SQLite, over the read-only connections, one
// statement per chunk of pgWriteMaxRows ids (a lookup in FerretDB's _id
// index each).
func (w *sqliteWriter) findByIDs(ctx context.Context, db, coll string, ids []string) (map[string][]byte, error) {
	if err := plainIDs(ids); err != nil {
		return nil, err
	}
	f, err := w.open(db)
	if err != nil {
		return nil, err
	}
	defer w.release(f)
	table, err := w.table(ctx, f.ro, db, coll)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(ids))
	for start := 0; start < len(ids); start += pgWriteMaxRows {
		chunk := ids[start:min(start+pgWriteMaxRows, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = string(sjson.AppendString(nil, []byte(id)))
		}
		stmt := fmt.Sprintf(`SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' IN (?%s)`, table, strings.Repeat(", ?", len(chunk)-1))
		if err := w.readRows(ctx, f.ro, db, coll, stmt, args, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readRows runs a findByIDs statement and adds the documents it reads to
// out by _id.
func (w *sqliteWriter) readRows(ctx context.Context, d *sql.DB, db, coll, stmt string, args []any, out map[string][]byte) error {
	rows, err := d.QueryContext(ctx, stmt, args...)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			w.tables.forget(db, coll)
			return fmt.Errorf("%w: the collection's table is gone", ErrNoDirectWrites)
		}
		return fmt.Errorf("embedded mongodb: direct read: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var text []byte
		if err := rows.Scan(&text); err != nil {
			return fmt.Errorf("embedded mongodb: direct read: %w", err)
		}
		doc, err := sjson.Decode(text)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrNoDirectWrites, err)
		}
		id, ok := bson.Raw(doc).Lookup("_id").StringValueOK()
		if !ok {
			return fmt.Errorf("%w: a document whose _id is not a string", ErrNoDirectWrites)
		}
		out[id] = doc
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("embedded mongodb: direct read: %w", err)
	}
	return nil
}

// insertNew: Mongo.InsertNew on SQLite, all in one transaction; FerretDB's
// unique _id index refuses a taken _id, which the insert skips.
func (w *sqliteWriter) insertNew(ctx context.Context, db, coll string, ids []string, docs [][]byte) (int64, error) {
	return w.write(ctx, db, coll, ids, docs, func(table string) string {
		return fmt.Sprintf(`INSERT INTO %q (_ferretdb_sjson) VALUES (?) ON CONFLICT DO NOTHING`, table)
	}, func(_ int, doc string) []any { return []any{doc} })
}

func (w *sqliteWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, f := range w.dbs {
		w.retire(name, f)
	}
}
