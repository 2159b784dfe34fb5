package app

import (
	"sync/atomic"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/metrics"
)

var (
	lagDesc = prometheus.NewDesc(metrics.Namespace+"_consumer_lag_records",
		"Records of a partition the gateway's consumer group has not committed yet, against the last stable offset (ListOffsets, read_committed): command-handler on the commands topic, projector on the events topic (less the last transaction's commit marker; the projector commits once the customer summaries count a batch). Read from the group's committed offsets, so every instance reports the same, whether or not a member runs; take the max over instances.",
		[]string{"group", "partition"}, nil)
	lagErrorsDesc = prometheus.NewDesc(metrics.Namespace+"_consumer_lag_errors_total",
		"Scrapes whose consumer lag could not be read (the lag series are then left out).", nil, nil)
)

// lagCollector reads the consumer groups' lag when scraped, with a client
// of its own.
type lagCollector struct {
	m      *Main
	client sarama.Client
	errors atomic.Int64
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- lagErrorsDesc
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	topics := kafka.NewTopics(c.m.Config.TopicPrefix)
	groups := []struct {
		label, group, topic string
		marker              int64 // the commit marker after the last record (the events are written in transactions)
	}{
		{"command-handler", c.m.handlerGroup(), topics.Commands, 0},
		{"projector", c.m.projectorGroup(c.m.store.Generation()), topics.Events, 1},
	}
	failed := false
	for _, g := range groups {
		parts, err := c.client.Partitions(g.topic)
		if err != nil {
			failed = true
			continue
		}
		stable, err := kafka.LastStableOffsets(c.client, g.topic, parts)
		if err != nil {
			failed = true
		}
		committed, err := kafka.CommittedOffsets(c.client, g.group, g.topic, parts)
		if err != nil {
			failed = true
			continue
		}
		for _, p := range parts {
			lso, ok := stable[p]
			if !ok {
				continue
			}
			from, ok := committed[p]
			if !ok {
				continue
			}
			lag := lso - max(from, 0)
			if lso > 0 {
				lag -= g.marker
			}
			ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(max(lag, 0)), g.label, metrics.Partition(p))
		}
	}
	n := c.errors.Load()
	if failed {
		n = c.errors.Add(1)
	}
	ch <- prometheus.MustNewConstMetric(lagErrorsDesc, prometheus.CounterValue, float64(n))
}
