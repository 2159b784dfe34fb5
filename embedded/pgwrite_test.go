package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/ordergateway/gateway/embedded/sjson"
	"github.com/ordergateway/gateway/embedded/sjson/sjsontest"
	"github.com/ordergateway/gateway/metrics"
	"github.com/ordergateway/gateway/view"
)

// TestDirectWritesGuards: this build writes directly (its FerretDB is the
// one whose layout the writer knows), a batch with an id twice is not
// written directly, and a document with many distinct keys is.
func TestDirectWritesGuards(t *testing.T) {
	if !ferretDBLayoutKnown() {
		t.Fatal("this build's FerretDB is not the one the direct writer knows: direct writes are off")
	}
	// A real binary checks its FerretDB's version (a test binary lists no
	// modules): go.mod's must be the one whose layout the writer knows, or
	// the writer is revisited with the upgrade.
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mod), "\t"+ferretDBModule+" "+ferretDBLayout) {
		t.Fatalf("go.mod requires a FerretDB other than %s*: check embedded/sjson and pgwrite.go against its table layout, then update ferretDBLayout", ferretDBLayout)
	}
	doc := mustMarshal(t, bson.D{{Key: "_id", Value: "a"}})
	if _, err := encodeDocs([]string{"a", "a"}, [][]byte{doc, doc}); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("an id twice: %v, want an errors.ErrUnsupported", err)
	}
	wide := mustMarshal(t, append(bson.D{{Key: "_id", Value: "w"}}, sjsontest.ManyKeys(40, "last")...))
	if _, err := sjson.Encode(wide); err != nil {
		t.Fatalf("40 distinct keys: %v", err)
	}
}

// TestSJSONMatchesFerretDB: the encoding of each sample is the JSON FerretDB
// stores for it, and FerretDB reads a document written in it back as the
// document.
func TestSJSONMatchesFerretDB(t *testing.T) {
	pgURL := testPostgreSQLURL(t)
	m, client := startPostgreSQLStore(t, pgURL)
	pg := pgConn(t, pgURL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := testDatabase(t, client, "sjson")
	coll := client.Database(db).Collection("docs")
	for _, d := range sjsontest.Samples() {
		if _, err := coll.InsertOne(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	table := collectionTable(t, pg, db, "docs")
	for _, d := range sjsontest.Samples() {
		raw, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		mine, err := sjson.Encode(raw)
		if err != nil {
			t.Fatalf("%v: %v", d[0].Value, err)
		}
		var same bool
		var stored string
		q := fmt.Sprintf(`SELECT _jsonb = $1::jsonb, _jsonb::text FROM %s WHERE _jsonb->'_id' = to_jsonb($2::text)`, pgx.Identifier{db, table}.Sanitize())
		if err := pg.QueryRow(ctx, q, string(mine), d[0].Value).Scan(&same, &stored); err != nil {
			t.Fatal(err)
		}
		if !same {
			t.Errorf("%v:\nmine:     %s\nFerretDB: %s", d[0].Value, mine, stored)
		}
	}
	// Written directly, read through FerretDB.
	ids, prevs, docs := []string{}, []int64{}, [][]byte{}
	for _, d := range sjsontest.Samples() {
		raw, _ := bson.Marshal(append(d, bson.E{Key: "version", Value: int64(2)}))
		ids, prevs, docs = append(ids, d[0].Value.(string)), append(prevs, 0), append(docs, raw)
	}
	if _, err := coll.UpdateMany(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: int64(0)}}}}); err != nil {
		t.Fatal(err)
	}
	n, err := m.ReplaceGuarded(ctx, db, "docs", "version", ids, prevs, docs)
	if err != nil || n != int64(len(ids)) {
		t.Fatalf("ReplaceGuarded: %d, %v; want %d", n, err, len(ids))
	}
	for i, d := range sjsontest.Samples() {
		var got bson.Raw
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: ids[i]}}).Decode(&got); err != nil {
			t.Fatal(err)
		}
		var want, have bson.D
		_ = bson.Unmarshal(docs[i], &want)
		_ = bson.Unmarshal(got, &have)
		if !reflect.DeepEqual(want, have) {
			t.Errorf("%v read through FerretDB:\n got %v\nwant %v", d[0].Value, have, want)
		}
	}
}

// TestFindByIDsReadsWhatFerretDBReads: each sample, written through
// FerretDB or directly, reads back directly as the BSON FerretDB returns
// for it, byte for byte; an id with no document is absent, and more ids
// than one statement takes are read in several.
func TestFindByIDsReadsWhatFerretDBReads(t *testing.T) {
	pgURL := testPostgreSQLURL(t)
	m, client := startPostgreSQLStore(t, pgURL)
	checkFindByIDs(t, m, client, testDatabase(t, client, "findids"))
}

// checkFindByIDs is FindByIDs' acceptance test, which the store runs on
// each backend: the documents FerretDB wrote (every type the encoding
// covers) and those written directly, more than one statement's worth,
// read back as FerretDB reads them; a missing id is absent; a collection
// that does not exist is ErrNoDirectWrites.
func checkFindByIDs(t *testing.T, m *Mongo, client *mongo.Client, db string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	coll := client.Database(db).Collection("docs")
	var ids []string
	for _, d := range sjsontest.Samples() {
		if _, err := coll.InsertOne(ctx, d); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d[0].Value.(string))
	}
	var direct []string
	var docs [][]byte
	for i := range pgWriteMaxRows + 10 {
		id := fmt.Sprintf("direct-%d", i)
		direct, docs = append(direct, id), append(docs, mustMarshal(t, bson.D{{Key: "_id", Value: id}, {Key: "n", Value: int64(i)}, {Key: "at", Value: time.UnixMilli(int64(i)).UTC()}}))
	}
	if n, err := m.InsertNew(ctx, db, "docs", direct, docs); err != nil || n != int64(len(direct)) {
		t.Fatalf("InsertNew: %d, %v", n, err)
	}
	got, err := m.FindByIDs(ctx, db, "docs", append(append([]string{"missing"}, ids...), direct...))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ids)+len(direct) {
		t.Fatalf("%d documents read, want %d", len(got), len(ids)+len(direct))
	}
	for _, id := range append(ids, direct...) {
		var want bson.Raw
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&want); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[id], want) {
			t.Errorf("%s read directly:\n got %v\nwant %v", id, bson.Raw(got[id]), want)
		}
	}
	if _, err := m.FindByIDs(ctx, db, "nothing-here", []string{"a"}); !errors.Is(err, ErrNoDirectWrites) {
		t.Errorf("a collection that does not exist: %v, want ErrNoDirectWrites (read it through FerretDB)", err)
	}
}

// countingWriter counts the batches of replaces a view.Store writes
// through it, and the inserts.
type countingWriter struct {
	m                       *Mongo
	calls, written, inserts int64
}

func (c *countingWriter) ReplaceGuarded(ctx context.Context, db, coll, guard string, ids []string, prevs []int64, docs [][]byte) (int64, error) {
	n, err := c.m.ReplaceGuarded(ctx, db, coll, guard, ids, prevs, docs)
	if err == nil {
		c.calls++
		c.written += n
	}
	return n, err
}

func (c *countingWriter) InsertNew(ctx context.Context, db, coll string, ids []string, docs [][]byte) (int64, error) {
	n, err := c.m.InsertNew(ctx, db, coll, ids, docs)
	if err == nil {
		c.inserts += n
	}
	return n, err
}

// TestDirectReplacesOnPostgreSQL: the views' inserts and guarded replaces go
// through the direct writer, one statement per batch, with the guard checked
// as through FerretDB (a stale write or a taken _id conflicts, the others
// are written), what
// they write reads back through FerretDB, and the statement finds each row
// by FerretDB's _id index, not by reading the table.
func TestDirectReplacesOnPostgreSQL(t *testing.T) {
	pgURL := testPostgreSQLURL(t)
	m, client := startPostgreSQLStore(t, pgURL)
	pg := pgConn(t, pgURL)
	db := testDatabase(t, client, "direct")
	direct := &countingWriter{m: m}
	store, ctx := openViews(t, m, db, true, view.SummaryLane(), view.FilterGuards(), view.DirectWrites(direct))
	at := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	order := func(id string, v int) view.OrderDoc {
		return view.OrderDoc{ID: id, CustomerID: "c-1", Status: "PENDING", Currency: "EUR", Total: int64(100 * v), ItemCount: 1,
			Items:   []view.ItemDoc{{SKU: "sku-1", Name: "Tea \"green\"", Quantity: v, UnitPrice: 100, LineTotal: int64(100 * v)}},
			History: []view.ChangeDoc{}, Version: v, CreatedAt: at, UpdatedAt: at.Add(time.Duration(v) * time.Second),
			ShippingAddress: &view.AddressDoc{Name: "Ann", Line1: "1 Main St", City: "Town", PostalCode: "12345", Country: "DE"},
			Uncounted:       []view.Transition{{Offset: int64(v)}}}
	}
	const stored, n = 2000, 40
	var writes []view.OrderWrite
	for i := range stored {
		writes = append(writes, view.OrderWrite{Doc: order(fmt.Sprintf("ord_%d", i), 1)})
	}
	if err := store.PutOrders(ctx, writes); err != nil {
		t.Fatal(err)
	}
	if direct.inserts != stored {
		t.Fatalf("direct writer: %d inserted, want %d", direct.inserts, stored)
	}
	// An _id taken is a conflict; the other new document is written.
	err := store.PutOrders(ctx, []view.OrderWrite{{Doc: order("ord_5", 7)}, {Doc: order("ord_new", 1)}})
	if !errors.Is(err, view.ErrConflict) || direct.inserts != stored+1 {
		t.Fatalf("inserting a taken _id and a new one: %v, %d inserted; want view.ErrConflict and %d", err, direct.inserts, stored+1)
	}
	analyze(ctx, t, pg, db, "orders")
	checkGuardedReplaces(ctx, t, pg, store, db, order, stored, n, func() {
		if direct.calls != 2 || direct.written != n+1 {
			t.Fatalf("direct writer: %d batches, %d documents written; want 2 and %d", direct.calls, direct.written, n+1)
		}
	})
	got, err := store.OrdersByID(ctx, []string{"ord_0", "ord_1", "ord_2", "ord_100", "ord_5"})
	if err != nil {
		t.Fatal(err)
	}
	got["ord_new"] = mustOrder(t, store, "ord_new")
	for id, v := range map[string]int{"ord_0": 2, "ord_1": 3, "ord_2": 2, "ord_100": 1, "ord_5": 2, "ord_new": 1} {
		want := order(id, v)
		if g := got[id]; !reflect.DeepEqual(g, want) {
			t.Errorf("%s read through FerretDB:\n got %+v\nwant %+v", id, g, want)
		}
	}
	// Summaries too (guard "rev"), and a write to a missing collection
	// falls back to FerretDB, which reports it as a conflict.
	if err := store.PutCustomers(ctx, []view.CustomerWrite{{Doc: view.CustomerDoc{ID: "c-1", Rev: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := store.PutCustomers(ctx, []view.CustomerWrite{{Doc: view.CustomerDoc{ID: "c-1", Rev: 2}, Prev: 1}}); err != nil {
		t.Fatal(err)
	}
	if direct.calls != 3 {
		t.Fatalf("direct writer: %d batches after the summary's replace, want 3", direct.calls)
	}
	if c, err := store.Customer(ctx, "c-1"); err != nil || c == nil || c.Rev != 2 {
		t.Fatalf("summary after its replace: %+v, %v; want rev 2", c, err)
	}
	if _, err := m.ReplaceGuarded(ctx, db, "missing", "version", []string{"x"}, []int64{1}, [][]byte{mustMarshal(t, bson.D{{Key: "_id", Value: "x"}})}); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("a replace in a missing collection: %v, want an errors.ErrUnsupported", err)
	}
}

// TestDirectWritePlansStayOnTheIndex: the direct writer's connections may
// keep their statements' plans, and the UPDATE's plan made while PostgreSQL
// knew the table as one row still finds each row by the _id index once the
// table has grown (no ANALYZE between: autovacuum's may come a minute
// later), instead of reading the whole table for every batch.
func TestDirectWritePlansStayOnTheIndex(t *testing.T) {
	pgURL := testPostgreSQLURL(t)
	m, client := startPostgreSQLStore(t, pgURL)
	pg := pgConn(t, pgURL)
	db := testDatabase(t, client, "plans")
	store, ctx := openViews(t, m, db, true, view.FilterGuards(), view.DirectWrites(m))
	order := func(id string) view.OrderWrite {
		return view.OrderWrite{Doc: view.OrderDoc{ID: id, CustomerID: "c-1", Status: "PENDING", Currency: "EUR", Items: []view.ItemDoc{}, History: []view.ChangeDoc{}, Version: 1}}
	}
	if err := store.PutOrders(ctx, []view.OrderWrite{order("first")}); err != nil {
		t.Fatal(err)
	}
	analyze(ctx, t, pg, db, "orders")

	// A connection as the writer's, with the plan made once and kept.
	w, ok := m.direct.(*pgWriter)
	if !ok {
		t.Fatalf("the store's direct writer is %T, want *pgWriter", m.direct)
	}
	cfg := w.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Prepare(ctx, "replace", pgReplaceStatement(db, collectionTable(t, pg, db, "orders"), "version")); err != nil {
		t.Fatal(err)
	}
	plan := func() string {
		t.Helper()
		var lines []string
		rows, err := conn.Query(ctx, `EXPLAIN EXECUTE replace('{first}', '{1}', '{"{}"}')`, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, line)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return strings.Join(lines, "\n")
	}
	onIndex := func(plan string) bool {
		return strings.Contains(plan, "Index Scan") && !strings.Contains(plan, "Seq Scan") && !strings.Contains(plan, "Hash")
	}
	if p := plan(); !onIndex(p) {
		t.Fatalf("the plan made at one row reads the table:\n%s", p)
	}
	var writes []view.OrderWrite
	for i := range 2000 {
		writes = append(writes, order(fmt.Sprintf("ord_%d", i)))
	}
	if err := store.PutOrders(ctx, writes); err != nil {
		t.Fatal(err)
	}
	if p := plan(); !onIndex(p) {
		t.Fatalf("the plan kept at 2,001 rows reads the table:\n%s", p)
	}
}

// TestDirectWritesCompressWithLZ4: a view large enough to be compressed is
// stored with lz4 when the server has it.
func TestDirectWritesCompressWithLZ4(t *testing.T) {
	pgURL := testPostgreSQLURL(t)
	m, client := startPostgreSQLStore(t, pgURL)
	pg := pgConn(t, pgURL)
	if _, err := pg.Exec(context.Background(), "SET default_toast_compression = lz4"); err != nil {
		t.Skipf("this PostgreSQL has no lz4: %v", err)
	}
	db := testDatabase(t, client, "lz4")
	store, ctx := openViews(t, m, db, false, view.DirectWrites(m))
	doc := view.OrderDoc{ID: "large", CustomerID: "c-1", Status: "PENDING", Currency: "EUR", History: []view.ChangeDoc{}, Version: 1}
	for i := range 40 {
		doc.Items = append(doc.Items, view.ItemDoc{SKU: fmt.Sprintf("sku-%d", i), Name: strings.Repeat("green tea ", 10), Quantity: 1, UnitPrice: 100, LineTotal: 100})
	}
	if err := store.PutOrders(ctx, []view.OrderWrite{{Doc: doc}}); err != nil {
		t.Fatal(err)
	}
	var method *string
	q := fmt.Sprintf(`SELECT pg_column_compression(_jsonb) FROM %s`, pgx.Identifier{db, collectionTable(t, pg, db, "orders")}.Sanitize())
	if err := pg.QueryRow(ctx, q).Scan(&method); err != nil {
		t.Fatal(err)
	}
	if method == nil || *method != "lz4" {
		t.Fatalf("the view is stored compressed with %v, want lz4", method)
	}
}

func mustMarshal(t *testing.T, d bson.D) []byte {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readerFunc is a view.DirectReader.
type readerFunc func(ctx context.Context, db, coll string, ids []string) (map[string][]byte, error)

func (f readerFunc) FindByIDs(ctx context.Context, db, coll string, ids []string) (map[string][]byte, error) {
	return f(ctx, db, coll, ids)
}

// TestDirectReadsOnPostgreSQL: the views read by id straight from the
// store's tables are those read through FerretDB; when the direct read
// fails, the read goes through FerretDB and the fallback is counted.
func TestDirectReadsOnPostgreSQL(t *testing.T) {
	pgURL := testPostgreSQLURL(t)
	m, client := startPostgreSQLStore(t, pgURL)
	db := testDatabase(t, client, "reads")
	var direct int
	reader := readerFunc(func(ctx context.Context, db, coll string, ids []string) (map[string][]byte, error) {
		direct++
		return m.FindByIDs(ctx, db, coll, ids)
	})
	errs := metrics.NewErrors(prometheus.NewRegistry())
	viaFerretDB, ctx := openViews(t, m, db, true, view.DirectWrites(m))
	store, _ := openViews(t, m, db, true, view.DirectWrites(m), view.DirectReads(reader), view.WithErrors(errs))
	at := time.Date(2026, 12, 6, 22, 30, 0, 0, time.UTC)
	var writes []view.OrderWrite
	for i := range 3 {
		writes = append(writes, view.OrderWrite{Doc: view.OrderDoc{ID: fmt.Sprintf("ord_%d", i), CustomerID: "c-1", Status: "PENDING", Currency: "EUR", Total: 250, ItemCount: 1,
			Items:   []view.ItemDoc{{SKU: "sku-1", Name: "Tea", Quantity: 1, UnitPrice: 250, LineTotal: 250}},
			History: []view.ChangeDoc{{Status: "PENDING", At: at}}, Version: 1, CreatedAt: at, UpdatedAt: at}})
	}
	if err := store.PutOrders(ctx, writes); err != nil {
		t.Fatal(err)
	}
	for _, w := range writes {
		if got, want := mustOrder(t, store, w.Doc.ID), mustOrder(t, viaFerretDB, w.Doc.ID); !reflect.DeepEqual(got, want) {
			t.Errorf("%s read directly:\n got %+v\nwant %+v", w.Doc.ID, got, want)
		}
	}
	if d, err := store.Order(ctx, "missing"); d != nil || err != nil {
		t.Errorf("a missing order: %+v, %v; want nil, nil", d, err)
	}
	ids := []string{"ord_0", "ord_2", "missing"}
	got, err := store.OrdersByID(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	want, err := viaFerretDB.OrdersByID(ctx, ids)
	if err != nil || !reflect.DeepEqual(got, want) || len(got) != 2 {
		t.Errorf("OrdersByID read directly: %+v; through FerretDB: %+v, %v", got, want, err)
	}
	if direct != 5 {
		t.Errorf("%d direct reads, want 5", direct)
	}
	if n := testutil.ToFloat64(errs.DirectReadFallbacks("failed")); n != 0 {
		t.Errorf("%v fallbacks, want none", n)
	}

	// A direct read that fails: read through FerretDB, and counted.
	failing := readerFunc(func(context.Context, string, string, []string) (map[string][]byte, error) {
		return nil, errors.New("connection refused")
	})
	fallback, _ := openViews(t, m, db, true, view.DirectReads(failing), view.WithErrors(errs))
	if got := mustOrder(t, fallback, "ord_1"); got.Version != 1 || got.ID != "ord_1" {
		t.Errorf("ord_1 read after a failed direct read: %+v", got)
	}
	if n := testutil.ToFloat64(errs.DirectReadFallbacks("failed")); n != 1 {
		t.Errorf("%v fallbacks counted, want 1", n)
	}
}

func mustOrder(t *testing.T, store *view.Store, id string) view.OrderDoc {
	t.Helper()
	d, err := store.Order(context.Background(), id)
	if err != nil || d == nil {
		t.Fatalf("order %s: %+v, %v", id, d, err)
	}
	return *d
}
