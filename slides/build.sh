#!/bin/bash
# Render the instructor's deck to slides/dist/index.html: one file, everything
# inline, no CDN: it works offline and prints to PDF from the browser (or
# `npm run pdf`, which needs Chromium). Marp comes from the npm registry, pinned
# in package-lock.json, installed once into slides/node_modules.
set -euo pipefail
cd "$(dirname "$0")"
command -v npm >/dev/null || { echo "npm not found: apt-get install npm" >&2; exit 1; }
[ -x node_modules/.bin/marp ] || npm ci --no-audit --no-fund --loglevel=error
# The diagrams (lessons/diagrams/*.dot) as SVG, beside the deck (for the PDF and
# editors' previews, which read paths from deck.md) and beside the HTML.
../scripts/diagrams.sh
mkdir -p diagrams dist/diagrams
cp ../lessons/diagrams/*.svg diagrams/
cp ../lessons/diagrams/*.svg dist/diagrams/
npx --no-install marp --html --theme-set=theme.css -o dist/index.html -- deck.md
echo "Written: slides/dist/index.html"
