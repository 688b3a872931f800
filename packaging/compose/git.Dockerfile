# The compose demo's git server: `git daemon` serving /srv/git, which
# git-serve.sh seeds with an example images repository on first start.
ARG BASE=debian:12
FROM ${BASE}
RUN apt-get update && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-unsafe-io git busybox-static && \
    rm -rf /var/lib/apt/lists/*
COPY git-serve.sh /usr/local/bin/git-serve
RUN useradd --system --home-dir /srv/git --no-create-home --shell /usr/sbin/nologin git && \
    install -d -o git -g git /srv/git
USER git
VOLUME /srv/git
ENTRYPOINT ["git-serve"]
