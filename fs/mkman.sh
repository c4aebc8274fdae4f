#!/bin/sh
# SPDX-License-Identifier: MIT
# Writes the man page source: fs/slimfs.1.scd followed by one section per
# command holding its --help text, so that the page and --help never disagree.
#   mkman.sh SLIMFS SCD > slimfs.1.scd
set -eu
slimfs=$1
cat "$2"
"$slimfs" --help | awk '/^commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }' |
while read -r cmd; do
	printf '\n## slimfs %s\n\n```\n' "$cmd"
	"$slimfs" "$cmd" --help | sed 's/\t/        /g'
	printf '```\n'
done
