package main

import (
	"github.com/ordergateway/gateway/app"

	"bufio"
	"fmt"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// These tests keep docker-compose.yml and the Dockerfile honest about the
// gateway: every setting in app.Settings() is set for the gateway service (and
// nothing else is), the images are pinned, the gateway points at the compose
// Kafka and MongoDB, and the single-node broker can run consumer groups and
// transactions. They only read files; they need no Docker.

// composeFile is the part of the compose spec the tests look at.
type composeFile struct {
	Version  any                       `yaml:"version"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image           string         `yaml:"image"`
	Build           any            `yaml:"build"`
	Environment     any            `yaml:"environment"` // map or list of KEY=VALUE
	DependsOn       any            `yaml:"depends_on"`  // list or map of name: {condition: ...}
	Healthcheck     map[string]any `yaml:"healthcheck"`
	Ports           []any          `yaml:"ports"`
	Volumes         []any          `yaml:"volumes"`
	StopGracePeriod string         `yaml:"stop_grace_period"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatalf("read docker-compose.yml: %v", err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("parse docker-compose.yml: %v", err)
	}
	if len(c.Services) == 0 {
		t.Fatal("docker-compose.yml: no services")
	}
	return c
}

func serviceNamed(t *testing.T, c composeFile, name string) composeService {
	t.Helper()
	s, ok := c.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml: no service %q (services: %v)", name, sortedKeys(c.Services))
	}
	return s
}

// envEntry is one environment entry: its value, and whether it has one
// (a bare `KEY` or `KEY:` passes the host's variable through instead).
type envEntry struct {
	value    string
	hasValue bool
}

// composeEnv reads a service's environment in either the map or the list form.
func composeEnv(t *testing.T, service string, raw any) map[string]envEntry {
	t.Helper()
	env := map[string]envEntry{}
	switch e := raw.(type) {
	case nil:
	case map[string]any:
		for k, v := range e {
			if v == nil {
				env[k] = envEntry{}
			} else {
				env[k] = envEntry{value: fmt.Sprint(v), hasValue: true}
			}
		}
	case []any:
		for _, item := range e {
			s, ok := item.(string)
			if !ok {
				t.Errorf("service %s: environment entry %v is not a KEY=VALUE string", service, item)
				continue
			}
			k, v, has := strings.Cut(s, "=")
			if _, dup := env[k]; dup {
				t.Errorf("service %s: environment variable %s is listed twice", service, k)
			}
			env[k] = envEntry{value: v, hasValue: has}
		}
	default:
		t.Fatalf("service %s: environment is a %T, want a map or a list", service, raw)
	}
	return env
}

// dependsOn returns the services a service depends on, with their condition
// ("" for the list form).
func dependsOn(t *testing.T, service string, raw any) map[string]string {
	t.Helper()
	deps := map[string]string{}
	switch d := raw.(type) {
	case nil:
	case []any:
		for _, name := range d {
			deps[fmt.Sprint(name)] = ""
		}
	case map[string]any:
		for name, v := range d {
			cond := ""
			if m, ok := v.(map[string]any); ok {
				cond, _ = m["condition"].(string)
			}
			deps[name] = cond
		}
	default:
		t.Fatalf("service %s: depends_on is a %T, want a list or a map", service, raw)
	}
	return deps
}

// imagePinned says whether an image reference names a fixed version: a
// digest, or a tag other than latest.
func imagePinned(ref string) (bool, string) {
	if _, digest, ok := strings.Cut(ref, "@"); ok {
		if strings.HasPrefix(digest, "sha256:") && len(digest) == len("sha256:")+64 {
			return true, ""
		}
		return false, "has a malformed digest"
	}
	// The tag follows the last ':' after the last '/' (a ':' before it is a
	// registry port, as in localhost:5000/x).
	name := ref[strings.LastIndex(ref, "/")+1:]
	_, tag, ok := strings.Cut(name, ":")
	switch {
	case !ok || tag == "":
		return false, "has no tag (means :latest)"
	case tag == "latest":
		return false, "uses the floating tag :latest"
	}
	return true, ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestComposeFileIsHonest checks docker-compose.yml and the Dockerfile
// against what the gateway actually reads and needs.
func TestComposeFileIsHonest(t *testing.T) {
	c := loadCompose(t)
	gw := serviceNamed(t, c, "gateway")
	env := composeEnv(t, "gateway", gw.Environment)

	if c.Version != nil {
		t.Errorf("docker-compose.yml: drop the obsolete top-level version: key (got %v)", c.Version)
	}

	t.Run("every setting is in the gateway environment", func(t *testing.T) {
		for _, s := range app.Settings() {
			e, ok := env[s.Env]
			switch {
			case !ok:
				t.Errorf("gateway environment is missing %s (flag --%s, default %q): add it to services.gateway.environment", s.Env, s.Flag, s.Default)
			case !e.hasValue:
				t.Errorf("gateway environment %s has no value (it would be taken from the host's environment)", s.Env)
			default:
				// The value must be one the gateway accepts.
				if _, err := app.ParseConfig(nil, func(k string) string {
					if k == s.Env {
						return e.value
					}
					return ""
				}, nil); err != nil {
					t.Errorf("gateway environment %s=%q is rejected by the gateway: %v", s.Env, e.value, err)
				}
			}
		}
	})

	t.Run("images are pinned", func(t *testing.T) {
		for _, name := range sortedKeys(c.Services) {
			s := c.Services[name]
			if s.Image == "" {
				if s.Build == nil {
					t.Errorf("service %s has neither image nor build", name)
				}
				continue
			}
			// With build: the tag names the local build, but a bare name
			// or :latest is as ambiguous there as for a pulled image.
			if ok, why := imagePinned(s.Image); !ok {
				t.Errorf("service %s: image %q is not pinned: it %s", name, s.Image, why)
			}
		}
	})

	t.Run("gateway uses the compose kafka and mongodb", func(t *testing.T) {
		deps := dependsOn(t, "gateway", gw.DependsOn)
		for _, want := range []string{"kafka", "mongodb"} {
			dep, ok := c.Services[want]
			if !ok {
				t.Errorf("docker-compose.yml has no %s service", want)
				continue
			}
			cond, ok := deps[want]
			if !ok {
				t.Errorf("gateway depends_on does not include %s", want)
				continue
			}
			if cond == "service_healthy" && len(dep.Healthcheck) == 0 {
				t.Errorf("gateway waits for %s to be service_healthy but %s has no healthcheck", want, want)
			}
		}

		brokers := env["KAFKA_BROKERS"].value
		if brokers == "" {
			t.Error("gateway KAFKA_BROKERS is empty: the gateway would start its embedded broker instead of the kafka service")
		}
		for _, b := range strings.Split(brokers, ",") {
			if b = strings.TrimSpace(b); b == "" {
				continue
			}
			host, _, err := net.SplitHostPort(b)
			if err != nil {
				t.Errorf("gateway KAFKA_BROKERS entry %q is not host:port: %v", b, err)
			} else if host != "kafka" {
				t.Errorf("gateway KAFKA_BROKERS entry %q does not name the kafka service", b)
			}
		}

		uri := env["MONGODB_URI"].value
		rest, ok := strings.CutPrefix(uri, "mongodb://")
		if !ok {
			t.Errorf("gateway MONGODB_URI %q is not a mongodb:// URI naming the mongodb service", uri)
		} else {
			if i := strings.LastIndex(rest, "@"); i >= 0 {
				rest = rest[i+1:]
			}
			hosts, _, _ := strings.Cut(rest, "/")
			hosts, _, _ = strings.Cut(hosts, "?")
			for _, h := range strings.Split(hosts, ",") {
				if name, _, err := net.SplitHostPort(h); err == nil {
					h = name
				}
				if h != "mongodb" {
					t.Errorf("gateway MONGODB_URI %q: host %q is not the mongodb service", uri, h)
				}
			}
		}

		// One broker: topics cannot have more replicas than that.
		if rf := env["REPLICATION_FACTOR"].value; rf != "1" && rf != "-1" {
			t.Errorf("gateway REPLICATION_FACTOR=%q but the compose kafka is a single broker: use 1 (or -1)", rf)
		}
	})

	t.Run("single-node kafka internal topics", func(t *testing.T) {
		kenv := composeEnv(t, "kafka", serviceNamed(t, c, "kafka").Environment)
		for _, k := range []string{
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
		} {
			if e, ok := kenv[k]; !ok {
				t.Errorf("kafka environment is missing %s=1: with the default 3 a single broker cannot create the internal topic", k)
			} else if e.value != "1" {
				t.Errorf("kafka environment %s=%q, want 1 for a single broker", k, e.value)
			}
		}
	})

	t.Run("gateway port, shutdown and volumes", func(t *testing.T) {
		_, port, err := net.SplitHostPort(env["LISTEN_ADDR"].value)
		if err != nil {
			t.Fatalf("gateway LISTEN_ADDR %q: %v", env["LISTEN_ADDR"].value, err)
		}
		published := false
		for _, p := range gw.Ports {
			s := fmt.Sprint(p)
			if m, ok := p.(map[string]any); ok {
				s = fmt.Sprint(m["target"])
			}
			if s == port || strings.HasSuffix(s, ":"+port) || strings.HasSuffix(s, ":"+port+"/tcp") {
				published = true
			}
		}
		if !published {
			t.Errorf("gateway ports %v do not publish the container port %s of LISTEN_ADDR", gw.Ports, port)
		}

		shutdown, err := time.ParseDuration(env["SHUTDOWN_TIMEOUT"].value)
		if err != nil {
			t.Fatalf("gateway SHUTDOWN_TIMEOUT: %v", err)
		}
		grace := 10 * time.Second // docker's default
		if gw.StopGracePeriod != "" {
			if grace, err = time.ParseDuration(gw.StopGracePeriod); err != nil {
				t.Fatalf("gateway stop_grace_period %q: %v", gw.StopGracePeriod, err)
			}
		}
		if grace <= shutdown {
			t.Errorf("gateway stop_grace_period %v is not longer than SHUTDOWN_TIMEOUT %v: docker would kill it mid-shutdown", grace, shutdown)
		}

		for _, name := range sortedKeys(c.Services) {
			for _, v := range c.Services[name].Volumes {
				s, ok := v.(string)
				if !ok {
					continue
				}
				src, _, ok := strings.Cut(s, ":")
				if !ok || strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") || strings.HasPrefix(src, "~") {
					continue // anonymous volume or bind mount
				}
				if _, declared := c.Volumes[src]; !declared {
					t.Errorf("service %s uses volume %q, which is not declared under top-level volumes", name, src)
				}
			}
		}
	})

	t.Run("Dockerfile base images are pinned", func(t *testing.T) {
		froms := dockerfileFroms(t)
		if len(froms) == 0 {
			t.Fatal("Dockerfile has no FROM line")
		}
		stages := map[string]bool{}
		for _, f := range froms {
			if stages[strings.ToLower(f.image)] {
				continue // FROM an earlier stage
			}
			if strings.Contains(f.image, "$") {
				t.Errorf("Dockerfile line %d: FROM %s uses a build argument; pin the image literally", f.line, f.image)
			} else if ok, why := imagePinned(f.image); !ok {
				t.Errorf("Dockerfile line %d: FROM %s is not pinned: it %s", f.line, f.image, why)
			}
			if f.stage != "" {
				stages[strings.ToLower(f.stage)] = true
			}
		}

		// The golang image sets GOTOOLCHAIN=local: its Go must be at least
		// go.mod's go line, or the build fails.
		want := goModGoVersion(t)
		for _, f := range froms {
			if !strings.HasPrefix(f.image, "golang:") {
				continue
			}
			tag := strings.TrimPrefix(f.image, "golang:")
			tag, _, _ = strings.Cut(tag, "@")
			ver, _, _ := strings.Cut(tag, "-")
			if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(ver) {
				t.Errorf("Dockerfile line %d: FROM %s: pin a Go patch release (golang:X.Y.Z-...)", f.line, f.image)
			} else if versionLess(ver, want) {
				t.Errorf("Dockerfile line %d: FROM %s is older than go.mod's go %s", f.line, f.image, want)
			}
		}
	})
}

// TestComposeGatewayEnvIsKnown fails on a gateway environment variable the
// gateway does not read: a typo or a setting that was renamed or removed.
func TestComposeGatewayEnvIsKnown(t *testing.T) {
	c := loadCompose(t)
	env := composeEnv(t, "gateway", serviceNamed(t, c, "gateway").Environment)
	known := map[string]bool{}
	for _, s := range app.Settings() {
		known[s.Env] = true
	}
	for _, k := range sortedKeys(env) {
		if !known[k] {
			t.Errorf("gateway environment sets %s, which the gateway does not read (not in app.Settings(), app/config.go): remove or fix it", k)
		}
	}
}

type dockerFrom struct {
	line         int
	image, stage string
}

// dockerfileFroms returns the Dockerfile's FROM instructions.
func dockerfileFroms(t *testing.T) []dockerFrom {
	t.Helper()
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatalf("open Dockerfile: %v", err)
	}
	defer f.Close()
	var froms []dockerFrom
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || !strings.EqualFold(fields[0], "FROM") {
			continue
		}
		args := fields[1:]
		for len(args) > 0 && strings.HasPrefix(args[0], "--") { // --platform=...
			args = args[1:]
		}
		if len(args) == 0 {
			t.Errorf("Dockerfile line %d: FROM without an image", n)
			continue
		}
		d := dockerFrom{line: n, image: args[0]}
		if len(args) >= 3 && strings.EqualFold(args[1], "AS") {
			d.stage = args[2]
		}
		froms = append(froms, d)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read Dockerfile: %v", err)
	}
	return froms
}

// goModGoVersion returns go.mod's go line, such as 1.26.8.
func goModGoVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatalf("read go.mod: %v", err)
	}
	m := regexp.MustCompile(`(?m)^go\s+(\S+)\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	return string(m[1])
}

// versionLess reports whether dotted numeric version a is before b
// (missing parts count as 0).
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}
