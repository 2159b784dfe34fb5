package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"

	"github.com/ordergateway/gateway/kafka"
)

// dropData removes what a system under test created on a shared broker and
// database (its topics, prefixed id, and its database, id: a schema on
// PostgreSQL), once the system has stopped. A broker and a database that
// keep every run's topics and tables gave lower and noisier figures after a
// dozen runs. Failures are reported, not fatal: the figures are taken.
func (s *stack) dropData(id string) error {
	var errs []string
	if s.brokers != "" {
		if err := dropTopics(s.brokers, id); err != nil {
			errs = append(errs, "topics: "+err.Error())
		}
	}
	if s.pgURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.pgURL)
		if err == nil {
			_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{id}.Sanitize()+" CASCADE")
			_ = conn.Close(context.Background())
		}
		if err != nil {
			errs = append(errs, "database: "+err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("dropping %s's data: %s", id, strings.Join(errs, "; "))
	}
	return nil
}

func dropTopics(brokers, prefix string) error {
	cfg := sarama.NewConfig()
	cfg.Version = kafka.Version
	admin, err := sarama.NewClusterAdmin(strings.Split(brokers, ","), cfg)
	if err != nil {
		return err
	}
	defer admin.Close()
	topics, err := admin.ListTopics()
	if err != nil {
		return err
	}
	for name := range topics {
		if strings.HasPrefix(name, prefix+".") {
			if err := admin.DeleteTopic(name); err != nil {
				return err
			}
		}
	}
	return nil
}
