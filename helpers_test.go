package main

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/kafka"
)

func equalJSON(t testing.TB, a, b any) bool {
	t.Helper()
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// consistencyTokenFor builds the token a mutation would return; the format
// is private to the server, so this mirrors graph.consistencyToken.
func consistencyTokenFor(orderID string, version int) string {
	return "ct1." + base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(version)+":"+orderID))
}

var jsonUnmarshal = json.Unmarshal

// newAdmin connects a cluster admin to the test broker.
func newAdmin(t testing.TB) sarama.ClusterAdmin {
	t.Helper()
	a, err := sarama.NewClusterAdmin(testBrokers, kafka.Config("test-admin", 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return a
}
