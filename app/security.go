package app

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/ordergateway/gateway/kafka"
)

// The settings of the connections to Kafka (KAFKA_TLS, KAFKA_CA_FILE,
// KAFKA_SASL_*: Config.KafkaSecurity) and of CORS (CORS_ALLOWED_ORIGINS).
// Each is checked by itself here; checkConnections checks them together.

func setKafkaTLS(c *Config, v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%q is not true or false", v)
	}
	c.KafkaSecurity.TLS = b
	return nil
}

func setKafkaCAFile(c *Config, v string) error {
	c.KafkaSecurity.CAFile = v
	return nil
}

func setKafkaSASLMechanism(c *Config, v string) error {
	if err := kafka.CheckSASLMechanism(v); err != nil {
		return err
	}
	c.KafkaSecurity.SASLMechanism = v
	return nil
}

func setKafkaSASLUsername(c *Config, v string) error {
	if v != "" {
		if err := kafka.CheckSASLUsername(v); err != nil {
			return err
		}
	}
	c.KafkaSecurity.SASLUsername = v
	return nil
}

// setKafkaSASLPassword never quotes the value.
func setKafkaSASLPassword(c *Config, v string) error {
	if v != "" {
		if err := kafka.CheckSASLPassword(v); err != nil {
			return err
		}
	}
	c.KafkaSecurity.SASLPassword = kafka.Secret(v)
	return nil
}

// corsNone is the CORS_ALLOWED_ORIGINS value that allows no other origin.
const corsNone = "none"

func setCORSAllowedOrigins(c *Config, v string) error {
	if v == "" {
		c.CORSAllowedOrigins = nil // ALLOWED_ORIGINS'
		return nil
	}
	if strings.TrimSpace(v) == corsNone {
		c.CORSAllowedOrigins = []string{}
		return nil
	}
	list := splitList(v)
	for _, p := range list {
		if err := checkOriginPattern(p); err != nil {
			return err
		}
	}
	c.CORSAllowedOrigins = list
	return nil
}

// checkOriginPattern reports an origin pattern that can match no Origin
// header's host: a malformed path.Match pattern, or one with a scheme or
// path.
func checkOriginPattern(p string) error {
	shown := p
	if len(shown) > 60 {
		shown = shown[:60] + "…"
	}
	if strings.Contains(p, "/") {
		return fmt.Errorf("%q is not a host pattern such as app.example.com, *.example.com or localhost:* (no scheme, no path)", shown)
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("%q is not a host pattern such as app.example.com, *.example.com or localhost:* (%v)", shown, err)
	}
	return nil
}

// corsOrigins is the host patterns of the pages CORS lets call /graphql.
func (c Config) corsOrigins() []string {
	if c.CORSAllowedOrigins == nil {
		return c.AllowedOrigins
	}
	return c.CORSAllowedOrigins
}

// checkConnections reports Kafka security settings that contradict each
// other, are out of bounds, or ask the embedded broker for what it does not
// do, in one line naming the setting (never showing the password). It reads
// KAFKA_CA_FILE, and returns what configures the Kafka clients: nil for a
// plaintext connection without SASL.
func (c Config) checkConnections() (*kafka.Security, error) {
	if !c.KafkaSecurity.Enabled() {
		return nil, nil
	}
	if len(c.KafkaBrokers) == 0 {
		return nil, errors.New("KAFKA_TLS, KAFKA_CA_FILE and KAFKA_SASL_* are for the brokers of KAFKA_BROKERS (--kafka-brokers): the embedded broker takes neither TLS nor SASL")
	}
	sec, err := c.KafkaSecurity.Load()
	if err != nil {
		return nil, settingError(err)
	}
	return sec, nil
}

// settingError words a kafka.ConfigError as ParseConfig's other errors:
// the variable, its flag, and what is wrong.
func settingError(err error) error {
	var ce *kafka.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	var names []string
	for _, env := range strings.Split(ce.Setting, ", ") {
		names = append(names, fmt.Sprintf("%s (--%s)", env, strings.ReplaceAll(strings.ToLower(env), "_", "-")))
	}
	return fmt.Errorf("%s: %v", strings.Join(names, ", "), ce.Err)
}
