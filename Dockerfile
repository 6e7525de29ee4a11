# syntax=docker/dockerfile:1
# The broker image. Three stages: build the packages to JavaScript (`npm run build`),
# production dependencies only, then the compiled dist/ trees: the image runs plain
# JavaScript (no tsx, no TypeScript, no transpile cache to write).
# No image is built in this repository's CI (no Docker engine there); see
# docs/kubernetes.md for how to build and check it yourself.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.base.json tsconfig.build.json ./
COPY scripts/build-assets.mjs scripts/
COPY proto/ proto/
COPY broker/ broker/
COPY approvers/ approvers/
COPY agents/ agents/
RUN npm ci --ignore-scripts --no-audit --no-fund && npm run build

FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY proto/package.json proto/
COPY broker/package.json broker/
COPY approvers/package.json approvers/
COPY agents/package.json agents/
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY --from=build /app/proto/package.json proto/
COPY --from=build /app/proto/dist proto/dist/
COPY --from=build /app/broker/package.json broker/
COPY --from=build /app/broker/bin/countersign-broker.js broker/bin/
COPY --from=build /app/broker/dist broker/dist/
COPY --from=build /app/approvers/package.json approvers/
COPY --from=build /app/approvers/dist approvers/dist/
COPY --from=build /app/agents/package.json agents/
COPY --from=build /app/agents/bin/countersign.js agents/bin/
COPY --from=build /app/agents/dist agents/dist/
# An unprivileged user with no shell and no home.
RUN groupadd --system --gid 10001 countersign \
 && useradd --system --uid 10001 --gid countersign --no-create-home --shell /usr/sbin/nologin countersign
USER 10001:10001
EXPOSE 8443 8080 8081 8090
# Node runs as PID 1 and handles SIGTERM itself (countersign-broker closes its
# listeners, lets calls finish within shutdown_grace, then exits); it starts no
# child processes, so no init process is needed to reap zombies.
ENTRYPOINT ["node", "--enable-source-maps", "broker/bin/countersign-broker.js"]
CMD ["serve", "--config", "/etc/countersign/config/config.yaml"]
