# dispatch-gateway on Debian 12 (bookworm) with Python 3.11.
# The image is built by the same scripts/install.sh that sets up a machine.
FROM python:3.11-slim-bookworm

WORKDIR /app
COPY . /app
# pjsua2 is built from pjproject's source here as on a machine (scripts/build_pjsua2.sh): the
# upstream 2.15.1 release is downloaded unless a tarball in the build context is named, e.g.
#   docker build --build-arg PJPROJECT_TARBALL=/app/vendor/pjproject-2.15.1.tar.gz .
# The PyPI wheel stays installed (DISPATCH_GATEWAY_PJSUA2=wheel selects it at run time).
ARG PJPROJECT_TARBALL=
# (an ARG is in the environment of RUN: install.sh sees PJPROJECT_TARBALL)
RUN ./scripts/install.sh \
    && rm -rf /var/lib/apt/lists/* /root/.cache/pip /root/.cache/dispatch-gateway/pjproject-*.tar.gz

# SIP (udp/tcp), RTP range of the first workers, control channel, health
EXPOSE 5060/udp 5060/tcp 20000-20999/udp 8765/tcp 8080/tcp
VOLUME ["/app/data"]

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

# Beyond loopback `serve` refuses dev tokens and default provider secrets: pass real ones, e.g.
#   -e DISPATCH_GATEWAY__AUTH__TOKENS='{ "a-long-random-secret" = { principal = "alice", role = "dispatcher" } }'
CMD ["/app/.venv/bin/dispatch-gateway", "serve", "--config", "config/gateway.toml", \
     "--set", "control.host=0.0.0.0", "--set", "http.host=0.0.0.0"]
