#!/bin/bash
# Render the diagrams of the lessons and slides: lessons/diagrams/*.dot, Graphviz's
# text (reviewed as code), to SVG beside them. Graphviz lays the boxes out itself,
# which hand-written SVG would not, and is a Debian and Ubuntu package that needs
# no network. build-lessons.sh and slides/build.sh call this.
set -euo pipefail
cd "$(dirname "$0")/../lessons/diagrams"
command -v dot >/dev/null || { echo "dot not found: apt-get install graphviz" >&2; exit 1; }
for src in *.dot; do
  svg=${src%.dot}.svg
  if [ ! -e "$svg" ] || [ "$src" -nt "$svg" ]; then
    dot -Tsvg -o "$svg.new" "$src"
    mv "$svg.new" "$svg"
  fi
done
