package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/embedded"
	"github.com/ordergateway/gateway/view"
)

const viewsUsage = `usage: order-gateway views COMMAND [flags]

  rebuild [--max-gap N]                 build a new generation of the views from the start of
                                        the events topic, then switch every gateway to it
  switch --generation N [--max-gap N]   catch generation N up and switch to it (a switch back)
  drop --generation N                   drop generation N's collections and consumer group
                                        (not the active one)
  status                                list the generations

It reads the gateway's environment (KAFKA_BROKERS, MONGODB_URI, DATA_DIR, ...).
Against Kafka and MongoDB it runs in this process, beside the running gateways.
With the embedded stack it starts it if no gateway holds DATA_DIR, and otherwise
asks that gateway through its admin listener (ADMIN_ADDR).
--max-gap: the records of the events topic the new generation may still lack
when it switches (default 100).
`

// ViewsCommand runs `order-gateway views ...` and returns the exit code.
func ViewsCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, viewsUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub := args[0]
	fs := flag.NewFlagSet("views "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	genText := fs.String("generation", "", "")
	maxGap := fs.Int64("max-gap", DefaultMaxGap, "")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "order-gateway views: %s\n%s", orText(err, "unexpected arguments"), viewsUsage)
		return 2
	}
	gen := 0
	switch sub {
	case "rebuild", "status":
		if *genText != "" {
			fmt.Fprintf(stderr, "order-gateway views %s: --generation is not for this command\n", sub)
			return 2
		}
	case "switch", "drop":
		g, err := view.ParseGeneration(*genText)
		if err != nil {
			fmt.Fprintf(stderr, "order-gateway views %s: --generation: %v\n", sub, err)
			return 2
		}
		gen = g
	default:
		fmt.Fprintf(stderr, "order-gateway views: unknown command %q\n%s", sub, viewsUsage)
		return 2
	}
	if *maxGap < 0 || *maxGap > 1_000_000_000 {
		fmt.Fprintln(stderr, "order-gateway views: --max-gap must be from 0 to 1000000000")
		return 2
	}
	cfg, err := ParseConfig(nil, getenv, io.Discard)
	if err != nil {
		fmt.Fprintln(stderr, "order-gateway: config:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: max(cfg.LogLevel, slog.LevelWarn)}))
	m := &Main{Config: cfg, Logger: logger, ViewsOnly: true}
	if err := m.Run(ctx); err != nil {
		m.Close()
		if errors.Is(err, embedded.ErrDataDirInUse) {
			return adminCall(ctx, cfg, sub, gen, *maxGap, stdout, stderr)
		}
		fmt.Fprintln(stderr, "order-gateway views:", err)
		return 1
	}
	defer m.Close()
	if err := m.runViewsCommand(ctx, sub, gen, *maxGap, stdout); err != nil {
		fmt.Fprintln(stderr, "order-gateway views:", userText(err))
		return 1
	}
	return 0
}

// runViewsCommand runs one views command on a started Main, writing its
// output to out.
func (m *Main) runViewsCommand(ctx context.Context, sub string, gen int, maxGap int64, out io.Writer) error {
	switch sub {
	case "rebuild":
		_, err := m.RebuildViews(ctx, out, maxGap)
		return err
	case "switch":
		return m.SwitchViews(ctx, out, gen, maxGap)
	case "drop":
		if err := m.DropViews(ctx, gen); err != nil {
			return err
		}
		fmt.Fprintf(out, "views drop: generation %d dropped\n", gen)
		return nil
	case "status":
		gens, err := m.ViewsStatus(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%-10s  %-8s  %-6s  %-12s  %s\n", "GENERATION", "STATE", "ACTIVE", "EVENTS", "COLLECTIONS")
		for _, g := range gens {
			active := ""
			if g.Active {
				active = "yes"
			}
			fmt.Fprintf(out, "%-10d  %-8s  %-6s  %-12s  %s\n", g.Generation, g.State, active, strconv.FormatInt(g.Applied, 10), collectionNames(g.Generation))
		}
		return nil
	}
	return fmt.Errorf("unknown views command %q", sub)
}

func orText(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

// userText is an error for the command line: a domain error's message.
func userText(err error) string {
	var de *domain.Error
	if errors.As(err, &de) {
		return de.Message
	}
	return err.Error()
}
