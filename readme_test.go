package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runnableBlock is a README code block marked runnable: the line before its
// ```sh fence is <!-- runnable --> (it must print something, and no GraphQL
// error or userError) or <!-- runnable, prints: A | B --> (its output must
// hold A and B; errors may be among them).
type runnableBlock struct {
	line   int
	code   string
	prints []string // nil: no errors allowed
	js     bool     // a node module: run in testdata/apollo (graphql-ws, ws), with the shell's variables in its environment
}

var runnableMarker = regexp.MustCompile(`^<!-- runnable(?:, prints: (.*))? -->$`)

func runnableBlocks(t *testing.T, readme string) []runnableBlock {
	t.Helper()
	lines := strings.Split(readme, "\n")
	var blocks []runnableBlock
	for i := 0; i < len(lines); i++ {
		m := runnableMarker.FindStringSubmatch(strings.TrimSpace(lines[i]))
		if m == nil {
			continue
		}
		if i+1 >= len(lines) || lines[i+1] != "```sh" && lines[i+1] != "```js" {
			t.Fatalf("README.md:%d: a runnable marker must stand right before a ```sh or ```js block", i+1)
		}
		b := runnableBlock{line: i + 2, js: lines[i+1] == "```js"}
		if m[1] != "" {
			for p := range strings.SplitSeq(m[1], "|") {
				b.prints = append(b.prints, strings.TrimSpace(p))
			}
		}
		j := i + 2
		for ; j < len(lines) && lines[j] != "```"; j++ {
			b.code += lines[j] + "\n"
		}
		blocks = append(blocks, b)
		i = j
	}
	return blocks
}

// TestREADMERunnableBlocks runs the README's code blocks marked runnable, in
// order, in one bash session (so a block may use what an earlier one set),
// against a started gateway, as a newcomer would paste them. Two things are
// changed: localhost:8080 is the test gateway's address, and `go run .` is
// the gateway built once by the test (go build -o), with AUTH_JWT_SECRET the
// tests' secret so that `go run . token` mints tokens the gateway takes, and
// KAFKA_BROKERS and TOPIC_PREFIX the test gateway's, for `go run .
// deadletters`.
func TestREADMERunnableBlocks(t *testing.T) {
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is needed to run the README's examples (apt-get install %s)", tool, tool)
		}
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := runnableBlocks(t, string(readme))
	if len(blocks) < 3 {
		t.Fatalf("README.md has %d runnable blocks; want at least the first example, the SSE one and APQ's", len(blocks))
	}
	bin := filepath.Join(t.TempDir(), "order-gateway")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	g := startGateway(t, testConfig(t))

	dir := t.TempDir()
	shim := `go() { if [[ "$1" == run && "$2" == . ]]; then shift 2; "$ORDER_GATEWAY_BIN" "$@"; else command go "$@"; fi; }` + "\n"
	// `go run . deadletters` reads the test gateway's topics.
	env := append(os.Environ(), "ORDER_GATEWAY_BIN="+bin, "AUTH_JWT_SECRET="+string(testSecret), "DATA_DIR="+dir,
		"KAFKA_BROKERS="+strings.Join(g.Config.KafkaBrokers, ","), "TOPIC_PREFIX="+g.Config.TopicPrefix)
	state := filepath.Join(dir, "state.sh") // the variables a block leaves for the next
	if err := os.WriteFile(state, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	node, errNode := exec.LookPath("node")
	for _, b := range blocks {
		code := strings.ReplaceAll(b.code, "localhost:8080", g.Addr())
		if b.js {
			if errNode != nil {
				t.Logf("README.md:%d: not run: node is needed for a js block (apt-get install nodejs npm)", b.line)
				continue
			}
			modules := nodeModules(t)
			file, err := filepath.Abs(filepath.Join(modules, fmt.Sprintf(".readme-%d.mjs", b.line)))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, []byte(code), 0o600); err != nil {
				t.Fatal(err)
			}
			defer os.Remove(file)
			code = fmt.Sprintf("(set -a; . %s; %q %q)\n", state, node, file) // the variables exported to node only
		}
		script := "set -euo pipefail\n" + shim + ". " + state + "\n" + code + "\ndeclare -p | grep -E '^declare -- [A-Z][A-Z0-9_]*=' > " + state + ".new || true\nmv " + state + ".new " + state + "\n"
		bctx, bcancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(bctx, "bash", "-c", script)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		bcancel()
		t.Logf("README.md:%d:\n%s\n--- output:\n%s", b.line, b.code, out)
		switch {
		case err != nil:
			t.Errorf("README.md:%d: the block failed: %v", b.line, err)
		case len(strings.TrimSpace(string(out))) == 0:
			t.Errorf("README.md:%d: the block printed nothing", b.line)
		case b.prints == nil && (strings.Contains(string(out), `"errors"`) || regexp.MustCompile(`"userErrors":\[\{`).Match(out)):
			t.Errorf("README.md:%d: the block's output holds an error", b.line)
		}
		for _, p := range b.prints {
			if !strings.Contains(string(out), p) {
				t.Errorf("README.md:%d: the output does not hold %q", b.line, p)
			}
		}
	}
}
