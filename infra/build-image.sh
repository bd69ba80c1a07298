#!/usr/bin/env bash
# Build the tiering container image (infra/Containerfile) from a wheelhouse made on this host.
#   IMAGE=localhost/tiering:0.1.0   the tag (default: localhost/tiering:<version>)
#   BASE=<image>                    the base image (default: the Containerfile's python:3.11-slim-bookworm)
#   PYTHON=.venv/bin/python         the Python that builds the wheels (its version must match BASE's)
#   CONTAINER_TOOL=buildah|podman|docker   (default: the first one found; BUILDAH_ISOLATION=chroot where
#                                   buildah's default isolation is unavailable, as in CI)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
VERSION=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
IMAGE=${IMAGE:-localhost/tiering:$VERSION}
TOOL=${CONTAINER_TOOL:-$(command -v buildah || command -v podman || command -v docker || true)}
if [ -z "$TOOL" ]; then
  echo "build-image: no buildah, podman or docker found" >&2
  exit 1
fi
CONTEXT=build/image
rm -rf "$CONTEXT"
mkdir -p "$CONTEXT/wheels"
echo "build-image: wheelhouse (tiering + dependencies) in $CONTEXT/wheels"
"$PYTHON" -m pip wheel -q --wheel-dir "$CONTEXT/wheels" '.[service]'
args=(-f infra/Containerfile -t "$IMAGE")
if [ -n "${BASE:-}" ]; then args+=(--build-arg "BASE=$BASE"); fi
case "$(basename "$TOOL")" in
  buildah) "$TOOL" bud --layers=false "${args[@]}" "$CONTEXT" ;;
  *) "$TOOL" build "${args[@]}" "$CONTEXT" ;;
esac
echo "build-image: built $IMAGE"
