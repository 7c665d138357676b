#!/bin/sh
# Run a command (the test suite) in a network namespace of its own that has only loopback, when this user may make
# one (root, as CI runs): then the kernel itself guarantees that no test reaches beyond this machine, and the
# multi-node Ray clusters the tests start advertise 127.0.0.1 (Ray picks the address it would reach the internet
# from; with no route out, that is loopback). Elsewhere the command runs as it is.
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && command -v ip >/dev/null && unshare --net true 2>/dev/null
then
  exec unshare --net sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi
exec "$@"
