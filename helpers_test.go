package main

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"testing"
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
