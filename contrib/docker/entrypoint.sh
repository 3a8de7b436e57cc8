#!/bin/sh
# The image's entrypoint: runs fulcrum with its arguments. The admin API listens on every
# interface of the container only when a token protects it; otherwise it keeps fulcrum's
# default, the container's loopback. An explicit FULCRUM_ADMIN always wins.
if [ -z "${FULCRUM_ADMIN:-}" ] && { [ -n "${FULCRUM_ADMIN_TOKEN:-}" ] || [ -n "${FULCRUM_ADMIN_TOKEN_FILE:-}" ]; }; then
	FULCRUM_ADMIN=0.0.0.0:9090
	export FULCRUM_ADMIN
fi
exec fulcrum "$@" # /usr/local/bin in the image
