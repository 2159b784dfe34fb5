#!/usr/bin/env bash
# Fetches the playground's JavaScript and CSS from npm into playground/assets/ (go:embed serves them;
# see playground/README.md). Run it after changing a version below, then review `git diff --stat playground/assets`,
# run `go test ./playground/` and the browser test (`go test -run TestPlaygroundInBrowser -v .`) and commit.
#
#   scripts/update-playground.sh
#
# The files are copied verbatim (their sourceMappingURL names a .map that is not served: 404).
# Needs npm (any registry mirror npm is configured for). npm pack checks each tarball against the registry's
# integrity hash; playground/assets/PACKAGES records those hashes, so a later run shows any change in `git diff`.
# GraphiQL 4.x is the last major with a UMD bundle (graphql-ws is inside it); GraphiQL 5 is ESM with Monaco
# and would need a bundler. React 18 is the last major with UMD builds.
set -euo pipefail

GRAPHIQL_VERSION=4.1.2
REACT_VERSION=18.3.1

cd "$(dirname "$0")/.."
dest=playground/assets
command -v npm >/dev/null 2>&1 || { echo "update-playground.sh: npm not found (install Node.js)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
packages=("graphiql@$GRAPHIQL_VERSION" "react@$REACT_VERSION" "react-dom@$REACT_VERSION")
(cd "$tmp" && npm pack --json "${packages[@]}" >pack.json)

# unpack NAME VERSION: the package's tarball into $tmp/NAME
unpack() {
  mkdir -p "$tmp/$1"
  tar -xzf "$tmp/$1-$2.tgz" -C "$tmp/$1" --strip-components=1
}
unpack graphiql "$GRAPHIQL_VERSION"
unpack react "$REACT_VERSION"
unpack react-dom "$REACT_VERSION"

rm -rf "$dest"
mkdir -p "$dest/graphiql" "$dest/react" "$dest/react-dom"
cp "$tmp/graphiql/graphiql.min.js" "$tmp/graphiql/graphiql.min.css" "$tmp/graphiql/LICENSE" "$dest/graphiql/"
cp "$tmp/react/umd/react.production.min.js" "$tmp/react/LICENSE" "$dest/react/"
cp "$tmp/react-dom/umd/react-dom.production.min.js" "$tmp/react-dom/LICENSE" "$dest/react-dom/"
node -e '
  const pack = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  for (const p of pack) console.log(`${p.name} ${p.version} ${p.integrity}`);
' "$tmp/pack.json" >"$dest/PACKAGES"
echo "update-playground.sh: $dest now holds:" >&2
cat "$dest/PACKAGES" >&2
