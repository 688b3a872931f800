# The compose demo's registry: Debian's docker-registry, plain HTTP, its
# address from REGISTRY_HTTP_ADDR (compose.yaml).
ARG BASE=debian:12
FROM ${BASE}
RUN apt-get update && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-unsafe-io docker-registry && \
    rm -rf /var/lib/apt/lists/*
COPY registry.yml /etc/docker/registry/config.yml
USER docker-registry
VOLUME /var/lib/docker-registry
ENTRYPOINT ["docker-registry", "serve", "/etc/docker/registry/config.yml"]
