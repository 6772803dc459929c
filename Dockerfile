# syntax=docker/dockerfile:1
# wechat-dify-bot as a container image (README "Run it in a container"): the bundled server and
# `npm run doctor`, production dependencies only, as the unprivileged `node` user, state in /data.
#
# Node 24 (LTS until 2028-04-30) in the image: Node 20 reached its end of life on 2026-04-30 and the
# node:20-slim tag gets no more security updates. The code itself stays Node-20 compatible, because
# laf and sealaf run Node 20.10 and CI runs the tests on Node 20; the whole suite also passes on 24.
#
# `npm run image:check` runs these steps on the host in a clean copy of the repository and starts
# the result; the image build itself is not exercised in CI (no container engine runs there).

# Production dependencies alone (none of them has platform-specific parts).
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# The server and the doctor, bundled (esbuild, a dev dependency).
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# `npm install`, not `npm ci`: npm 11 records only the optional packages of the platform that wrote
# the lockfile (esbuild's binary) and `npm ci` then refuses it elsewhere; `npm install` keeps the lock.
RUN npm install --no-audit --no-fund
COPY tsconfig.json ./
COPY lib ./lib
COPY scripts ./scripts
RUN npm run build:server

FROM node:24-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/dist/server.js ./dist/server.js
COPY --from=build /app/dist/doctor.js ./dist/doctor.js
RUN mkdir -p /data && chown node:node /data
USER node
# The embedded store's files (when MONGODB_URI is not set).
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "require('http').get({host:'127.0.0.1',port:process.env.PORT||3000,path:'/healthz',timeout:4000},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]
# Exec form: node itself gets SIGTERM (a shell in between would swallow it) and stops gracefully
# (STOP_GRACE_S). Give `docker stop` more time than that: compose.yaml sets stop_grace_period.
STOPSIGNAL SIGTERM
CMD ["node", "dist/server.js"]
