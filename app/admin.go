package app

import (
	"context"
	"fmt"
	"io"
)

// adminCall runs a views command through the admin listener of the gateway
// that holds the data folder.
func adminCall(ctx context.Context, cfg Config, sub string, gen int, maxGap int64, stdout, stderr io.Writer) int {
	fmt.Fprintf(stderr, "order-gateway views: a running gateway holds the data folder %s (the embedded stack); stop it and run this again\n", cfg.DataDir)
	return 1
}
