package kafka

import "strings"

// MarkerPrefix starts the keys of the markers the command handler writes to
// the snapshots topic (to know when it has read a partition to its end) and,
// rarely, to the events topic (when it rebuilds a partition's state from its
// events). Markers have no value. No order id can start with it (ids have
// no control characters), and every reader of those topics skips them.
const MarkerPrefix = "\x00restore\x00"

// IsMarker reports whether a record's key is a marker's.
func IsMarker(key []byte) bool { return strings.HasPrefix(string(key), MarkerPrefix) }
