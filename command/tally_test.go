package command

import (
	"testing"

	"github.com/ordergateway/gateway/domain"
)

func TestTallies(t *testing.T) {
	at := func(v int) *orderState { return &orderState{Order: domain.Order{Version: v}} }
	states := partitionStates{0: {"a": at(2), "b": at(1)}, 1: {"c": at(4)}}
	before := map[int32]tally{0: tallyOf(states[0]), 1: tallyOf(states[1])}
	if before[0] != (tally{Orders: 2, Versions: 3}) || before[1] != (tally{Orders: 1, Versions: 4}) {
		t.Fatalf("tallyOf: %+v", before)
	}
	after := tallies(before, states, map[int32]map[string]*orderState{0: {"a": at(3), "d": at(1)}})
	if len(after) != 1 || after[0] != (tally{Orders: 3, Versions: 5}) {
		t.Fatalf("after a changed order and a new one: %+v, want only partition 0 with 3 orders, 5 versions", after)
	}
}
