package app

import (
	"bytes"
	"strings"
	"testing"
)

// TestDeadLettersCommandUsage: --help prints the usage, and bad usage ends
// with exit code 2 and one line on stderr, before any broker is reached.
func TestDeadLettersCommandUsage(t *testing.T) {
	env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:1"} // never dialled
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "usage: order-gateway deadletters list"},
		{[]string{"replay", "-h"}, 0, "replay  writes dead letters' records back"},
		{nil, 2, "give list, show ID or replay ID"},
		{[]string{"purge"}, 2, `unknown subcommand "purge"`},
		{[]string{"list", "3"}, 2, "list takes no dead letter"},
		{[]string{"show"}, 2, "show takes one dead letter"},
		{[]string{"show", "1/2", "3"}, 2, "show takes one dead letter"},
		{[]string{"show", "x/2"}, 2, `"x/2" is not a dead letter's OFFSET or PARTITION/OFFSET`},
		{[]string{"replay"}, 2, "replay takes dead letters"},
		{[]string{"replay", "1", "--all"}, 2, "replay takes dead letters"},
		{[]string{"replay", "--all", "--force"}, 2, "--force replays named dead letters again"},
		{[]string{"list", "--limit", "0"}, 2, "--limit \"0\" is not a whole number from 1 to 10000"},
		{[]string{"list", "--limit"}, 2, "--limit needs a value"},
		{[]string{"show", "1", "--max-bytes=10"}, 2, "--max-bytes \"10\" is not a whole number from 64"},
		{[]string{"replay", "1", "--wait", "forever"}, 2, "--wait \"forever\" is not a duration"},
		{[]string{"list", "--json=maybe"}, 2, `--json="maybe" is not true or false`},
		{[]string{"list", "--topic-prefix", "bad prefix"}, 2, "config: flag --topic-prefix"},
		{[]string{"list", "--no-such-setting", "x"}, 2, "config: flag provided but not defined"},
	} {
		var out, errOut bytes.Buffer
		code := DeadLettersCommand(c.args, func(k string) string { return env[k] }, &out, &errOut)
		got := out.String() + errOut.String()
		if code != c.code || !strings.Contains(got, c.want) {
			t.Errorf("deadletters %q: exit %d, %q; want %d and %q", c.args, code, got, c.code, c.want)
		}
		if code == 2 && (out.Len() != 0 || strings.Count(errOut.String(), "\n") != 1 || !strings.HasPrefix(errOut.String(), "order-gateway deadletters: ")) {
			t.Errorf("deadletters %q: want one line on stderr, got stdout %q, stderr %q", c.args, out.String(), errOut.String())
		}
	}
}
