#!/usr/bin/env bash
# `buf breaking` for `make check`: compares protos/ with a base commit through buf's git input
# (the rules, FILE, are in buf.yaml). The base:
#   1. $BUF_AGAINST when set (any commit-ish: `make check BUF_AGAINST=v1.2.0`);
#   2. else `git merge-base HEAD origin/main` when origin/main exists and the merge base is not
#      HEAD itself: a branch is compared with where it left main, all its commits at once;
#   3. else HEAD~1: on main (CI's clean clone of it) that is the commit before the last.
# A base without buf.yaml predates the buf layout (protos/ as the proto root): there is no
# baseline to compare with, and the check passes saying so. So does a clone without HEAD~1.
# Usage: scripts/buf-breaking.sh [path to buf, default .venv/bin/buf]
set -euo pipefail
cd "$(dirname "$0")/.."
buf="${1:-.venv/bin/buf}"

if [ -n "${BUF_AGAINST:-}" ]; then
  base="$BUF_AGAINST"
  why="BUF_AGAINST"
elif git rev-parse --verify --quiet origin/main >/dev/null \
  && merge_base="$(git merge-base HEAD origin/main)" \
  && [ "$merge_base" != "$(git rev-parse HEAD)" ]; then
  base="$merge_base"
  why="merge base with origin/main"
else
  base="HEAD~1"
  why="the previous commit"
fi

if ! commit="$(git rev-parse --verify --quiet "${base}^{commit}")"; then
  if [ -n "${BUF_AGAINST:-}" ]; then
    echo "buf breaking: BUF_AGAINST=$BUF_AGAINST is not a commit" >&2
    exit 2
  fi
  echo "buf breaking: no baseline to compare ($base does not exist here: a shallow clone?)"
  exit 0
fi
short="$(git rev-parse --short "$commit")"
if ! git cat-file -e "$commit:buf.yaml" 2>/dev/null; then
  echo "buf breaking: no baseline to compare ($why, $short, has no buf.yaml: it predates the buf layout)"
  exit 0
fi

echo "buf breaking: against $why, $short"
# The git input reads the base commit's own buf.yaml; .git is a file in a worktree, which buf
# reads as well.
"$buf" breaking --against ".git#ref=$commit"
