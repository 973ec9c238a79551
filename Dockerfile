# The example binary, examples/mailproxy, in a minimal image:
#
#   docker build -t mailproxy .
#   docker run --rm -p 127.0.0.1:1143:1143 -p 127.0.0.1:1110:1110 -p 127.0.0.1:1025:1025 mailproxy
#
# runs the demo (its banner's curl commands work from the host), and
#
#   docker run --rm -v "$PWD/mail.conf:/etc/mailproxy/mailproxy.conf:ro" -p 143:1143 mailproxy -c /etc/mailproxy/mailproxy.conf
#
# runs a configuration of yours. The binary is static (CGO_ENABLED=0) and
# runs as an unprivileged user (distroless's nonroot, 65532): listen on
# ports above 1024 in the container and publish them where you like.
#
# The build stage also makes the auth service of examples/compose (target
# "auth"); the default target is the proxy.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/ ./examples/mailproxy ./examples/compose/auth

# The auth service of examples/compose (docker build --target auth).
FROM gcr.io/distroless/static-debian12:nonroot AS auth
COPY --from=build /out/auth /usr/local/bin/mail-auth
USER nonroot:nonroot
EXPOSE 9000
ENTRYPOINT ["/usr/local/bin/mail-auth"]

FROM gcr.io/distroless/static-debian12:nonroot AS mailproxy
COPY --from=build /out/mailproxy /usr/local/bin/mailproxy
USER nonroot:nonroot
# The demo's ports, and those of examples/compose: IMAP, POP3, SMTP.
EXPOSE 1143 1110 1025
ENTRYPOINT ["/usr/local/bin/mailproxy"]
CMD ["-demo-addr", "0.0.0.0"]
