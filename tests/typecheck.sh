#!/usr/bin/env bash
# mypy --strict on the room core, moderation and the Python client under their import names
# (hearth.spaces, hearth.moderation, hearth.client), and on the shell's Redis broker
# (hearth.web.redis_broker: the core's broker seam over Redis). Those names map onto the
# repository's top-level folders only through the package's install mapping, which mypy does
# not read: it reads a link tree instead.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=build/typecheck
rm -rf "$tree"
mkdir -p "$tree/hearth"
for package in spaces moderation client web; do
  ln -s "../../../$package" "$tree/hearth/$package"
done
cd "$tree"
exec ../../.venv/bin/mypy --config-file ../../pyproject.toml --strict -p hearth.spaces -p hearth.moderation -p hearth.client -m hearth.web.redis_broker "$@"
