#!/bin/bash
# Build the lessons into a static site that works offline, in target/book
# (open target/book/index.html). mdBook comes from crates.io, built once into
# target/tools (about two and a half minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
MDBOOK_VERSION=0.5.4
mdbook=target/tools/bin/mdbook
# One build at a time: test.sh starts one in the background (--tools) while the
# tests run, and the render test's own call waits here for it.
mkdir -p target/tools
exec 9>target/tools/.lock
flock 9
if ! [ -x "$mdbook" ] || [ "$("$mdbook" --version)" != "mdbook v$MDBOOK_VERSION" ]; then
  echo "Building mdBook $MDBOOK_VERSION (once)"
  "${CARGO:-cargo}" install --quiet --locked --root target/tools mdbook --version "$MDBOOK_VERSION"
fi
flock -u 9
[ "${1:-}" = --tools ] && exit 0
scripts/diagrams.sh
"$mdbook" build lessons
echo "Written: target/book/index.html"
