// Command order-gateway serves a GraphQL API for e-commerce orders, built as
// CQRS over Apache Kafka and MongoDB. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ordergateway/gateway/app"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" { // go run . token --customer c-42 | --staff
		os.Exit(app.TokenCommand(os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "deadletters" { // go run . deadletters list | show ID | replay ID
		os.Exit(app.DeadLettersCommand(os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "views" { // go run . views rebuild | switch | drop | status
		os.Exit(app.ViewsCommand(os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
	}
	cfg, err := app.ParseConfig(os.Args[1:], os.Getenv, os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "order-gateway: config:", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	m := &app.Main{Config: cfg, Logger: logger}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, set := os.LookupEnv("GOGC"); !set {
		go app.PaceGC(ctx, time.Second) // an operator's GOGC is kept
	}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "order-gateway:", err)
		m.Close()
		os.Exit(1)
	}
	<-ctx.Done()
	stop()
	logger.Info("shutting down")
	if err := m.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "order-gateway: shutdown:", err)
		os.Exit(1)
	}
}
