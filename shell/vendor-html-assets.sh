#!/usr/bin/env bash
# Refresh the JavaScript that `thor show --html` inlines into its reports, from the npm registry.
#   ./shell/vendor-html-assets.sh          pinned versions below; ~3 MB download, a few seconds
# Writes src/thor_cli/show/html/assets/: the minified UMD builds of vega, vega-lite, vega-embed
# (charts) and highlight.js's common bundle (python highlighting), their LICENSE files, and
# VERSIONS. Needs npm (only for `npm pack`: no node_modules, no build step). Bump a version
# here, rerun, and commit the assets together with this file.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# ---- pinned versions ----
VEGA=6.4.0
VEGA_LITE=6.5.0
VEGA_EMBED=7.3.0
HLJS=11.11.1

DEST=src/thor_cli/show/html/assets
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---- fetch the release tarballs (npm pack: the registry's published files, checksummed) ----
(cd "$work" && npm pack -q "vega@$VEGA" "vega-lite@$VEGA_LITE" "vega-embed@$VEGA_EMBED" \
    "@highlightjs/cdn-assets@$HLJS" >/dev/null)
unpack() { mkdir -p "$work/$1" && tar xzf "$work/$2" -C "$work/$1"; }
unpack vega "vega-$VEGA.tgz"
unpack vega-lite "vega-lite-$VEGA_LITE.tgz"
unpack vega-embed "vega-embed-$VEGA_EMBED.tgz"
unpack hljs "highlightjs-cdn-assets-$HLJS.tgz"

# ---- copy builds and licenses ----
mkdir -p "$DEST"
cp "$work/vega/package/build/vega.min.js" "$DEST/vega.min.js"
cp "$work/vega-lite/package/build/vega-lite.min.js" "$DEST/vega-lite.min.js"
cp "$work/vega-embed/package/build/vega-embed.min.js" "$DEST/vega-embed.min.js"
cp "$work/hljs/package/highlight.min.js" "$DEST/highlight.min.js"
cp "$work/hljs/package/styles/github.min.css" "$DEST/highlight-github.min.css"
cp "$work/vega/package/LICENSE" "$DEST/LICENSE.vega"
cp "$work/vega-lite/package/LICENSE" "$DEST/LICENSE.vega-lite"
cp "$work/vega-embed/package/LICENSE" "$DEST/LICENSE.vega-embed"
cp "$work/hljs/package/LICENSE" "$DEST/LICENSE.highlight.js"
printf 'vega %s\nvega-lite %s\nvega-embed %s\nhighlight.js %s\n' "$VEGA" "$VEGA_LITE" "$VEGA_EMBED" "$HLJS" \
    > "$DEST/VERSIONS"

# an inlined script ends at the first "</script": none of these builds may contain one
if grep -l '</script' "$DEST"/*.js; then echo "a vendored build contains </script; cannot inline it" >&2; exit 1; fi
du -ch "$DEST"/*.js "$DEST"/*.css | tail -1 >&2
