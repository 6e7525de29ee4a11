# syntax=docker/dockerfile:1
# The broker image. Two stages: production dependencies only, then the sources
# (TypeScript runs through tsx, so there is no build output to copy).
# No image is built in this repository's CI (no Docker engine there); see
# docs/kubernetes.md for how to build and check it yourself.

FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY proto/package.json proto/
COPY broker/package.json broker/
COPY approvers/package.json approvers/
COPY agents/package.json agents/
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    # tsx keeps its transpile cache under TMPDIR: with a read-only root filesystem,
    # mount a writable emptyDir at /tmp (the Helm chart does).
    TMPDIR=/tmp
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY proto/ ./proto/
COPY broker/ ./broker/
COPY approvers/ ./approvers/
COPY agents/ ./agents/
# An unprivileged user with no shell and no home.
RUN groupadd --system --gid 10001 countersign \
 && useradd --system --uid 10001 --gid countersign --no-create-home --shell /usr/sbin/nologin countersign
USER 10001:10001
EXPOSE 8443 8080 8081 8090
# Node runs as PID 1 and handles SIGTERM itself (countersign-broker closes its
# listeners, lets calls finish within shutdown_grace, then exits); it starts no
# child processes, so no init process is needed to reap zombies.
ENTRYPOINT ["node", "broker/bin/countersign-broker.js"]
CMD ["serve", "--config", "/etc/countersign/config/config.yaml"]
