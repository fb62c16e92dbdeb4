# Dockerfile - conduitd on Debian 12, built with meson.
#
#   docker build -t conduitd .
#   docker-compose up -d          (see docker-compose.yml)
#
# Stage 1 builds a release binary; stage 2 is a slim runtime with only the
# shared libraries conduitd needs, running as the unprivileged user
# `conduitd` with its data directory on the /var/lib/conduitd volume.
# Only the source directories are copied, so local build-* trees never enter
# the image.

FROM debian:12-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential pkg-config meson ninja-build \
      libevent-dev liblmdb-dev libpq-dev libssl-dev libjansson-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY meson.build meson_options.txt README.md ./
COPY src ./src
COPY sql ./sql
COPY conf ./conf
COPY docs ./docs
COPY scripts ./scripts
COPY examples ./examples
COPY bench ./bench
COPY fuzz ./fuzz
RUN meson setup /build --buildtype=release -Dtests=disabled --prefix=/usr/local \
 && ninja -C /build \
 && DESTDIR=/install meson install -C /build --no-rebuild

FROM debian:12-slim
# One package per library the binaries link (readelf -d: NEEDED); apt brings
# their own dependencies (libpq5 -> Kerberos, LDAP, GnuTLS ...).
# tests/functional/test_packaging.py checks this list against ldd of the build.
#   libcrypto.so.3, libssl.so.3          libssl3
#   libevent_core-2.1.so.7               libevent-core-2.1-7
#   libevent_extra-2.1.so.7 (HTTP API)   libevent-extra-2.1-7
#   liblmdb.so.0                         liblmdb0
#   libpq.so.5                           libpq5
#   libjansson.so.4 (JSON)               libjansson4
# ca-certificates: for pg_conninfo with sslmode=verify-full.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libevent-core-2.1-7 libevent-extra-2.1-7 libjansson4 liblmdb0 libpq5 libssl3 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/conduitd --shell /usr/sbin/nologin conduitd \
 && install -d -o conduitd -g conduitd -m 0700 /var/lib/conduitd \
 && install -d -m 0755 /etc/conduitd
COPY --from=build /install/ /
COPY conf/conduitd.conf /etc/conduitd/conduitd.conf
USER conduitd
VOLUME ["/var/lib/conduitd"]
# conduitd logs to stderr (docker logs); SIGTERM (docker stop) stops cleanly.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/conduitd", "--conf", "/etc/conduitd/conduitd.conf", \
            "--datadir", "/var/lib/conduitd"]
CMD []
