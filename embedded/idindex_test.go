package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// idLookupPlan is SQLite's plan for the statement FerretDB runs to find a
// document by _id in the collection's table.
func idLookupPlan(t *testing.T, file, table string) string {
	t.Helper()
	return queryPlan(t, file, fmt.Sprintf(`SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' = ?`, table), `"x"`)
}

// sqliteDB opens database file read-only until the test ends.
func sqliteDB(t *testing.T, file string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// queryPlan is SQLite's plan for query (the first line of EXPLAIN QUERY
// PLAN) in database file.
func queryPlan(t *testing.T, file, query string, args ...any) string {
	t.Helper()
	db := sqliteDB(t, file)
	var id, parent, unused int
	var plan string
	if err := db.QueryRow("EXPLAIN QUERY PLAN "+query, args...).Scan(&id, &parent, &unused, &plan); err != nil {
		t.Fatal(err)
	}
	return plan
}

func tableOf(t *testing.T, file, collection string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var table string
	if err := db.QueryRow(`SELECT table_name FROM _ferretdb_collections WHERE name = ?`, collection).Scan(&table); err != nil {
		t.Fatal(err)
	}
	return table
}

// startStore starts an embedded store in a fresh directory and connects to
// it; both end with the test.
func startStore(t *testing.T) (m *Mongo, dir string, client *mongo.Client) {
	t.Helper()
	dir = t.TempDir()
	m, err := StartMongo(dir, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	client, err = mongo.Connect(options.Client().ApplyURI(m.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	return m, dir, client
}

func TestStoreIndexesIDLookups(t *testing.T) {
	_, dir, client := startStore(t)
	ctx := context.Background()

	coll := client.Database("idx").Collection("orders")
	var docs []any
	for i := range 200 {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("o%03d", i)}, {Key: "n", Value: i}})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "idx.sqlite")
	table := tableOf(t, file, "orders")

	// The indexer runs in the background; it must get to a new collection.
	deadline := time.Now().Add(20 * time.Second)
	for plan := idLookupPlan(t, file, table); !strings.Contains(plan, idIndexSuffix); plan = idLookupPlan(t, file, table) {
		if time.Now().After(deadline) {
			t.Fatalf("no _id lookup index after 20 s; plan: %s", plan)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Lookups, replaces, upserts and duplicates behave as before.
	var got bson.M
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "o150"}}).Decode(&got); err != nil || got["n"] != int32(150) {
		t.Fatalf("FindOne(o150) = %v, %v", got, err)
	}
	if res, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "o150"}}, bson.D{{Key: "n", Value: -1}}); err != nil || res.MatchedCount != 1 {
		t.Fatalf("ReplaceOne = %+v, %v", res, err)
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "o150"}}).Decode(&got); err != nil || got["n"] != int32(-1) {
		t.Fatalf("after replace: %v, %v", got, err)
	}
	if _, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "new"}}, bson.D{{Key: "n", Value: 7}}, options.Replace().SetUpsert(true)); err != nil {
		t.Fatal(err)
	}
	if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != 201 {
		t.Fatalf("count = %d, %v; want 201", n, err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "o001"}}); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("duplicate insert: err = %v, want a duplicate key error", err)
	}

	// FerretDB's own view of the indexes is unchanged.
	specs, err := coll.Indexes().ListSpecifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 1 || specs[0].Name != "_id_" {
		t.Fatalf("listIndexes = %+v, want only _id_", specs)
	}

	// A dropped and recreated database is indexed again.
	if err := client.Database("idx").Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "again"}}); err != nil {
		t.Fatal(err)
	}
	table = tableOf(t, file, "orders")
	deadline = time.Now().Add(20 * time.Second)
	for plan := idLookupPlan(t, file, table); !strings.Contains(plan, idIndexSuffix); plan = idLookupPlan(t, file, table) {
		if time.Now().After(deadline) {
			t.Fatalf("recreated database: no _id lookup index after 20 s; plan: %s", plan)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "again"}}).Err(); err != nil {
		t.Fatal(err)
	}
}

// IndexIDs indexes a new collection at once, without waiting for the
// background pass.
func TestIndexIDsIndexesNewCollectionsAtOnce(t *testing.T) {
	m, dir, client := startStore(t)
	ctx := context.Background()
	// The background pass runs every idIndexInterval; right after it has
	// run, a new collection waits for the next one.
	for _, db := range []string{"first", "second"} {
		if _, err := client.Database(db).Collection("orders").InsertOne(ctx, bson.D{{Key: "_id", Value: "o1"}}); err != nil {
			t.Fatal(err)
		}
		if err := m.IndexIDs(ctx); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, db+".sqlite")
		if plan := idLookupPlan(t, file, tableOf(t, file, "orders")); !strings.Contains(plan, idIndexSuffix) {
			t.Fatalf("%s: no _id lookup index right after IndexIDs; plan: %s", db, plan)
		}
	}
}
