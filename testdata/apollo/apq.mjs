// Apollo Client's persisted-queries link against a running gateway:
//   node apq.mjs http://127.0.0.1:PORT/graphql   (GATEWAY_TOKEN: a bearer token)
// Each check prints a line; the exit code is 1 if one failed.
// TestApolloPersistedQueries (apq_test.go) runs it.
import { createHash } from "node:crypto";
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";

const uri = process.argv[2];
const token = process.env.GATEWAY_TOKEN;
const sha256 = (s) => createHash("sha256").update(s).digest("hex");

// Every request the link chain sends, as the gateway saw it.
const sent = [];
const recordingFetch = async (url, init) => {
  const u = new URL(url);
  const body = init.body ? JSON.parse(init.body) : null;
  const params = body ?? {
    query: u.searchParams.get("query") ?? undefined,
    extensions: u.searchParams.has("extensions") ? JSON.parse(u.searchParams.get("extensions")) : undefined,
  };
  const res = await fetch(url, init);
  const text = await res.clone().text();
  sent.push({ method: init.method, hasQuery: !!params.query, hash: params.extensions?.persistedQuery?.sha256Hash,
    status: res.status, code: JSON.parse(text).errors?.[0]?.extensions?.code });
  return res;
};

function client(options = {}) {
  return new ApolloClient({
    cache: new InMemoryCache(),
    link: ApolloLink.from([
      new PersistedQueryLink({ sha256, ...options }),
      new HttpLink({ uri, fetch: recordingFetch, headers: token ? { authorization: `Bearer ${token}` } : {} }),
    ]),
  });
}

let failed = 0, passed = 0;
function check(name, ok, detail) {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok ? "" : ": " + JSON.stringify(detail)}`);
  if (ok) passed++; else failed++;
}

const customer = `apollo-${Date.now()}`;
const PLACE = gql`
  mutation Place($input: PlaceOrderInput!) {
    placeOrder(input: $input) { order { id status } consistencyToken userErrors { code message } }
  }
`;
const ORDER = gql`
  query Order($id: ID!, $t: String) {
    node(id: $id, consistencyToken: $t) { id ... on Order { customerId status itemCount } }
  }
`;

// 1. A mutation: the link sends its hash first, the gateway does not know
// it (PERSISTED_QUERY_NOT_FOUND), and the link sends it again with the query.
sent.length = 0;
const placed = await client().mutate({ mutation: PLACE, variables: { input: {
  customerId: customer, currencyCode: "EUR", items: [{ sku: "A-1", name: "Pen", quantity: 3, unitPrice: "1.50" }] } } });
const order = placed.data?.placeOrder?.order;
check("mutation runs through the link", order?.status === "PENDING", placed);
check("mutation: hash only, miss, then query and hash, both POST",
  sent.length === 2 && !sent[0].hasQuery && sent[0].code === "PERSISTED_QUERY_NOT_FOUND" && sent[0].status === 200 &&
  sent[1].hasQuery && sent[1].hash === sent[0].hash && sent.every((r) => r.method === "POST"), sent);

// 2. A query, new to the gateway: the same two steps.
sent.length = 0;
const first = await client().query({ query: ORDER, variables: { id: order.id, t: placed.data.placeOrder.consistencyToken }, fetchPolicy: "network-only" });
check("query answers", first.data?.node?.id === order.id && first.data.node.itemCount === 3, first);
check("query: miss then register", sent.length === 2 && sent[0].code === "PERSISTED_QUERY_NOT_FOUND" && sent[1].hasQuery, sent);

// 3. Another client (a fresh page): the hash alone is enough now.
sent.length = 0;
const again = await client().query({ query: ORDER, variables: { id: order.id }, fetchPolicy: "network-only" });
check("known hash: one request without the query", sent.length === 1 && !sent[0].hasQuery && sent[0].status === 200 && again.data?.node?.id === order.id, { sent, again });

// 4. GET with the hash only (what a CDN can cache): one short GET.
sent.length = 0;
const viaGet = await client({ useGETForHashedQueries: true }).query({ query: ORDER, variables: { id: order.id }, fetchPolicy: "network-only" });
check("GET with the hash only", sent.length === 1 && sent[0].method === "GET" && !sent[0].hasQuery && viaGet.data?.node?.customerId === customer, { sent, viaGet });

// 5. A mutation stays a POST with useGETForHashedQueries.
sent.length = 0;
const confirm = gql`mutation Confirm($id: ID!) { confirmOrder(input: { orderId: $id }) { order { status } userErrors { code } } }`;
const confirmed = await client({ useGETForHashedQueries: true }).mutate({ mutation: confirm, variables: { id: order.id } });
check("mutation with useGETForHashedQueries is POSTed", sent.length >= 1 && sent.every((r) => r.method === "POST") && confirmed.data?.confirmOrder?.order?.status === "CONFIRMED", { sent, confirmed });

console.log(`Apollo Client checks: ${passed} ok, ${failed} failed`);
process.exit(failed ? 1 : 0);
