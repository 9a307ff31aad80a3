#!/usr/bin/env bash
# `fitlm plan --measure-host` replaces the host CPU's estimated bandwidth by a
# measurement: the plan must say "measured", with a positive GB/s figure, and
# without the flag it must say "estimated".
set -u
out=$("$FITLM_BIN" plan llama-3.2-1b --measure-host) || { echo "FAIL: plan --measure-host exited $?"; exit 1; }
line=$(printf '%s\n' "$out" | grep '^This machine')
echo "$line"
bw=$(printf '%s\n' "$line" | sed -n 's/.*~\([0-9.]*\) GB\/s measured.*/\1/p')
fails=0
if [ -z "$bw" ] || ! awk -v b="$bw" 'BEGIN { exit !(b > 0.1) }'; then echo "FAIL: no measured bandwidth in: $line"; fails=1; fi
est=$("$FITLM_BIN" plan llama-3.2-1b | grep '^This machine')
case "$est" in *estimated*) ;; *) echo "FAIL: without --measure-host: $est"; fails=1 ;; esac
[ $fails -eq 0 ] && echo "2 passed, 0 failed" || echo "FAILED"
exit $fails
