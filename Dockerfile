# fulcrum in a container: a static binary on a small base, run as an unprivileged user.
#
#   docker build -t fulcrum --build-arg VERSION=v1.2.3 .
#   docker run -p 8000:8000 -p 9090:9090 -e FULCRUM_ADMIN_TOKEN=... fulcrum serve --backend 10.0.0.5:8080
#
# The admin API (9090) listens on every interface of the container only when a token protects
# it (FULCRUM_ADMIN_TOKEN or FULCRUM_ADMIN_TOKEN_FILE); without one it stays on the container's
# loopback, reachable with `docker exec CONTAINER fulcrum status`. FULCRUM_ADMIN, when set,
# always wins. See contrib/docker/entrypoint.sh.

FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w -X github.com/fulcrumlb/fulcrum/internal/buildinfo.version=${VERSION}" -o /out/fulcrum ./cmd/fulcrum

FROM alpine:3
RUN adduser -D -H -u 10001 fulcrum
COPY --from=build /out/fulcrum /usr/local/bin/fulcrum
COPY contrib/docker/entrypoint.sh /usr/local/bin/fulcrum-entrypoint
USER 10001:10001
EXPOSE 8000 9090
ENTRYPOINT ["/usr/local/bin/fulcrum-entrypoint"]
CMD ["serve"]
