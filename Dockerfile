# Build with dev dependencies, run with production dependencies only, as a non-root user.
# Not built in CI here: no Docker engine, and Buildah (which runs here) cannot pull the node base image (this sandbox
# reaches only the npm registry and Debian's mirrors); kept conventional on purpose.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build-if-stale.js ./scripts/
COPY src ./src
# npm run build also builds the SDK package (packages/client, from src/client); the image runs only the server's dist/.
COPY packages/client ./packages/client
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production PORT=8080 INTERNAL_PORT=9090
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The CLI on the PATH, so an operator mints tokens with the deployed key:
#   kubectl exec deploy/<release> -- realtime-gateway token --role service
RUN ln -s /app/dist/cli/realtime-gateway.js /usr/local/bin/realtime-gateway
USER node
# 8080: WebSocket endpoints and health (public); 9090: metrics, server API, /admin (internal, never public)
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# Node is PID 1 and receives SIGTERM directly (exec form): the gateway drains with 1012.
# JWT_SECRET (or JWT_PUBLIC_KEY) must come from the environment: no key is baked in.
CMD ["node", "dist/main.js"]
