package embedded

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/ordergateway/gateway/embedded/sjson"
	"github.com/ordergateway/gateway/embedded/sjson/sjsontest"
	"github.com/ordergateway/gateway/view"
)

// startSQLiteStore starts the embedded store on SQLite in a temporary
// folder and connects to it; both end with the test.
func startSQLiteStore(t *testing.T) (*Mongo, *mongo.Client, string) {
	t.Helper()
	dir := t.TempDir()
	m, err := StartMongo(dir, "127.0.0.1:0", nil)
	return m, connectStore(t, m, err), dir
}

// sameJSON reports whether two JSON texts hold the same value (numbers
// compared as written, keys in any order).
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	decode := func(j []byte) any {
		d := json.NewDecoder(bytes.NewReader(j))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("%s: %v", j, err)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}

// TestSJSONMatchesFerretDBOnSQLite: on SQLite too the encoding is the JSON
// FerretDB stores, and FerretDB reads documents written in it back as
// they were; a direct write to a database FerretDB dropped and created
// again lands in the new file.
func TestSJSONMatchesFerretDBOnSQLite(t *testing.T) {
	m, client, dir := startSQLiteStore(t)
	if !m.DirectWrites() {
		t.Fatal("the store on SQLite has no direct writer")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	coll := client.Database("sjson").Collection("docs")
	for _, d := range sjsontest.Samples() {
		if _, err := coll.InsertOne(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	q := url.Values{}
	q.Add("mode", "ro")
	file, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "sjson.sqlite")+"?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var table string
	if err := file.QueryRowContext(ctx, `SELECT table_name FROM _ferretdb_collections WHERE name = 'docs'`).Scan(&table); err != nil {
		t.Fatal(err)
	}
	for _, d := range sjsontest.Samples() {
		mine, err := sjson.Encode(mustMarshal(t, d))
		if err != nil {
			t.Fatal(err)
		}
		var stored string
		id := string(sjson.AppendString(nil, []byte(d[0].Value.(string))))
		if err := file.QueryRowContext(ctx, fmt.Sprintf(`SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' = ?`, table), id).Scan(&stored); err != nil {
			t.Fatalf("%v: %v", d[0].Value, err)
		}
		if !sameJSON(t, mine, []byte(stored)) {
			t.Errorf("%v:\nmine:     %s\nFerretDB: %s", d[0].Value, mine, stored)
		}
	}
	// Written directly, read through FerretDB.
	var ids []string
	var prevs []int64
	var docs [][]byte
	for _, d := range sjsontest.Samples() {
		ids, prevs, docs = append(ids, d[0].Value.(string)), append(prevs, 0), append(docs, mustMarshal(t, append(d, bson.E{Key: "version", Value: int64(2)})))
	}
	if _, err := coll.UpdateMany(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: int64(0)}}}}); err != nil {
		t.Fatal(err)
	}
	if n, err := m.ReplaceGuarded(ctx, "sjson", "docs", "version", ids, prevs, docs); err != nil || n != int64(len(ids)) {
		t.Fatalf("ReplaceGuarded: %d, %v; want %d", n, err, len(ids))
	}
	for i := range ids {
		var want, have bson.D
		_ = bson.Unmarshal(docs[i], &want)
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: ids[i]}}).Decode(&have); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(want, have) {
			t.Errorf("%s read through FerretDB:\n got %v\nwant %v", ids[i], have, want)
		}
	}
	// The database dropped and created again: the writer must not write
	// to the removed file.
	if err := client.Database("sjson").Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "again"}, {Key: "version", Value: int64(1)}}); err != nil {
		t.Fatal(err)
	}
	doc := mustMarshal(t, bson.D{{Key: "_id", Value: "again"}, {Key: "version", Value: int64(2)}})
	if n, err := m.ReplaceGuarded(ctx, "sjson", "docs", "version", []string{"again"}, []int64{1}, [][]byte{doc}); err != nil || n != 1 {
		t.Fatalf("a replace after the database was created again: %d, %v; want 1", n, err)
	}
	var again struct{ Version int64 }
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "again"}}).Decode(&again); err != nil || again.Version != 2 {
		t.Fatalf("read back through FerretDB: %+v, %v; want version 2", again, err)
	}
}

// TestDirectWritesOnSQLite: the views' inserts and guarded replaces go
// through the direct writer on SQLite, with the guards checked as through
// FerretDB (a stale write or a taken _id conflicts, the others are
// written), and what they write reads back through FerretDB.
func TestDirectWritesOnSQLite(t *testing.T) {
	m, _, _ := startSQLiteStore(t)
	direct := &countingWriter{m: m}
	store, ctx := openViews(t, m, "direct", false, view.SoleWriter(), view.DirectWrites(direct))
	at := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	order := func(id string, v int) view.OrderDoc {
		return view.OrderDoc{ID: id, CustomerID: "c-1", Status: "PENDING", Currency: "EUR", Total: int64(100 * v), ItemCount: 1,
			Items:   []view.ItemDoc{{SKU: "sku-1", Name: "Tea", Quantity: v, UnitPrice: 100, LineTotal: int64(100 * v)}},
			History: []view.ChangeDoc{}, Version: v, CreatedAt: at, UpdatedAt: at.Add(time.Duration(v) * time.Second)}
	}
	var writes []view.OrderWrite
	for i := range 200 {
		writes = append(writes, view.OrderWrite{Doc: order(fmt.Sprintf("ord_%d", i), 1)})
	}
	if err := store.PutOrders(ctx, writes); err != nil {
		t.Fatal(err)
	}
	if direct.inserts != 200 {
		t.Fatalf("direct writer: %d inserted, want 200", direct.inserts)
	}
	writes = writes[:40]
	for i := range writes {
		writes[i] = view.OrderWrite{Doc: order(writes[i].Doc.ID, 2), Prev: 1}
	}
	if err := store.PutOrders(ctx, writes); err != nil {
		t.Fatalf("fresh writes: %v", err)
	}
	err := store.PutOrders(ctx, []view.OrderWrite{{Doc: order("ord_0", 3), Prev: 1}, {Doc: order("ord_1", 3), Prev: 2}})
	if !errors.Is(err, view.ErrConflict) {
		t.Fatalf("a stale guard: %v, want view.ErrConflict", err)
	}
	err = store.PutOrders(ctx, []view.OrderWrite{{Doc: order("ord_5", 7)}, {Doc: order("ord_new", 1)}})
	if !errors.Is(err, view.ErrConflict) {
		t.Fatalf("a taken _id: %v, want view.ErrConflict", err)
	}
	if direct.calls != 2 || direct.written != 41 || direct.inserts != 201 {
		t.Fatalf("direct writer: %d batches, %d replaced, %d inserted; want 2, 41, 201", direct.calls, direct.written, direct.inserts)
	}
	got, err := store.OrdersByID(ctx, []string{"ord_0", "ord_1", "ord_2", "ord_5", "ord_100", "ord_new"})
	if err != nil {
		t.Fatal(err)
	}
	for id, v := range map[string]int{"ord_0": 2, "ord_1": 3, "ord_2": 2, "ord_5": 2, "ord_100": 1, "ord_new": 1} {
		if g, want := got[id], order(id, v); !reflect.DeepEqual(g, want) {
			t.Errorf("%s read through FerretDB:\n got %+v\nwant %+v", id, g, want)
		}
	}
	if err := store.PutCustomers(ctx, []view.CustomerWrite{{Doc: view.CustomerDoc{ID: "c-1", Rev: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := store.PutCustomers(ctx, []view.CustomerWrite{{Doc: view.CustomerDoc{ID: "c-1", Rev: 2}, Prev: 1}}); err != nil {
		t.Fatal(err)
	}
	if c, err := store.Customer(ctx, "c-1"); err != nil || c == nil || c.Rev != 2 || direct.calls != 3 {
		t.Fatalf("summary after its direct replace: %+v, %v, %d batches; want rev 2, 3 batches", c, err, direct.calls)
	}
	// An _id SQLite might spell otherwise as JSON is written through FerretDB.
	if _, err := m.ReplaceGuarded(ctx, "direct", "orders", "version", []string{"é"}, []int64{1}, [][]byte{mustMarshal(t, bson.D{{Key: "_id", Value: "é"}})}); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("an _id with a non-ASCII character: %v, want an errors.ErrUnsupported", err)
	}
}

// TestTableCacheIsBounded: the direct writers' table cache holds at most
// pgWriterTablesMax entries, and forgets a collection, or a whole database.
func TestTableCacheIsBounded(t *testing.T) {
	var c tableCache
	for i := range 3 * pgWriterTablesMax {
		c.put("db", fmt.Sprintf("c%d", i), "t")
		if len(c.m) > pgWriterTablesMax {
			t.Fatalf("%d entries after %d puts; at most %d", len(c.m), i+1, pgWriterTablesMax)
		}
	}
	c.put("other", "x", "tx")
	c.put("other", "y", "ty")
	c.forget("other", "x")
	if _, ok := c.get("other", "x"); ok {
		t.Fatal("a forgotten collection is still cached")
	}
	if tb, ok := c.get("other", "y"); !ok || tb != "ty" {
		t.Fatalf("other.y: %q, %v", tb, ok)
	}
	c.forget("other", "")
	if _, ok := c.get("other", "y"); ok {
		t.Fatal("a forgotten database's collection is still cached")
	}
}

// TestFindByIDsOnSQLite: on SQLite FindByIDs reads what FerretDB reads
// (checkFindByIDs), over FerretDB's _id index; an _id SQLite might spell
// otherwise as JSON is read through FerretDB (errors.ErrUnsupported).
func TestFindByIDsOnSQLite(t *testing.T) {
	m, client, dir := startSQLiteStore(t)
	checkFindByIDs(t, m, client, "findids")
	ctx := context.Background()
	if _, err := m.FindByIDs(ctx, "findids", "docs", []string{"plain", "é"}); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("an _id with a non-ASCII character: %v, want an errors.ErrUnsupported", err)
	}
	// FerretDB stores "a&b" as "a\u0026b" (encoding/json escapes <, > and &):
	// matched as the text "a&b" it would be missing, and written again
	// beside itself. Such ids are read and written through FerretDB.
	if _, err := client.Database("findids").Collection("docs").InsertOne(ctx, bson.D{{Key: "_id", Value: "a&b"}, {Key: "n", Value: int64(1)}, {Key: "mark", Value: "amp"}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a&b", "<b>"} {
		if got, err := m.FindByIDs(ctx, "findids", "docs", []string{id}); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("FindByIDs of %q: %v, %v; want an errors.ErrUnsupported", id, got, err)
		}
		doc := mustMarshal(t, bson.D{{Key: "_id", Value: id}, {Key: "n", Value: int64(2)}})
		if _, err := m.InsertNew(ctx, "findids", "docs", []string{id}, [][]byte{doc}); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("InsertNew of %q: %v; want an errors.ErrUnsupported", id, err)
		}
		if _, err := m.ReplaceGuarded(ctx, "findids", "docs", "n", []string{id}, []int64{1}, [][]byte{doc}); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("ReplaceGuarded of %q: %v; want an errors.ErrUnsupported", id, err)
		}
	}
	var stored string
	if err := sqliteDB(t, filepath.Join(dir, "findids.sqlite")).QueryRow(fmt.Sprintf(`SELECT _ferretdb_sjson->'$._id' FROM %q WHERE _ferretdb_sjson->>'$.mark' = 'amp'`, tableOf(t, filepath.Join(dir, "findids.sqlite"), "docs"))).Scan(&stored); err != nil || stored != `"a\u0026b"` {
		t.Errorf("FerretDB stored _id a&b as %s (%v), want \"a\\u0026b\" (if it no longer escapes, plainIDs may let & < > through)", stored, err)
	}
	// Its IN list uses the _id lookup index (idindex.go) once the indexer
	// has added it to the new collection.
	file := filepath.Join(dir, "findids.sqlite")
	table := tableOf(t, file, "docs")
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(idLookupPlan(t, file, table), idIndexSuffix); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no _id lookup index after 20 s")
		}
	}
	plan := queryPlan(t, file, fmt.Sprintf(`SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' IN (?, ?)`, table), `"a"`, `"b"`)
	if !strings.Contains(plan, idIndexSuffix) {
		t.Errorf("FindByIDs' statement on SQLite: plan %q, want a search of the _id lookup index", plan)
	}
}

// TestSQLiteFilesCloseAfterTheirLastUse: a database file the writer lets go
// of (here: evicted when sqliteWriterFilesMax files are open) stays open for
// the read that is using it, and is closed when that read releases it.
func TestSQLiteFilesCloseAfterTheirLastUse(t *testing.T) {
	m, client, _ := startSQLiteStore(t)
	w, ok := m.direct.(*sqliteWriter)
	if !ok {
		t.Fatalf("the store on SQLite has direct writer %T", m.direct)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	names := make([]string, sqliteWriterFilesMax+1)
	for i := range names {
		names[i] = fmt.Sprintf("files%d", i)
		if _, err := client.Database(names[i]).Collection("docs").InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(f *sqliteFile) error {
		var n int
		return f.ro.QueryRowContext(ctx, `SELECT count(*) FROM _ferretdb_collections`).Scan(&n)
	}
	inUse, err := w.open(names[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names[1:] { // the last one evicts every open file
		f, err := w.open(name)
		if err != nil {
			t.Fatal(err)
		}
		w.release(f)
	}
	if _, still := w.dbs[names[0]]; still {
		t.Fatalf("%d files open and the first not evicted", len(names))
	}
	if err := count(inUse); err != nil {
		t.Fatalf("a read of an evicted file still in use: %v", err)
	}
	w.release(inUse)
	if err := count(inUse); err == nil {
		t.Fatal("an evicted file is still open after its last use")
	}
	if got, err := m.FindByIDs(ctx, names[0], "docs", []string{"a"}); err != nil || len(got) != 1 {
		t.Fatalf("FindByIDs after the eviction: %v, %v", got, err)
	}
}
